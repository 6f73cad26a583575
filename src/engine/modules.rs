//! Runbook modules: `import "lib/ovh-ip" as ip;` shares functions between runbooks.
//!
//! Imports are resolved when a runbook is loaded, never while it runs (the sandbox has no file
//! access): the path is relative to the importing file, then to each directory of
//! `LIFEBOAT_MODULE_PATH`, with `.rhai` added when it has no extension. Every module's source is
//! kept with the runbook and stored in the run's header, so `resume`, `export`/`import` and a
//! crash on another machine replay exactly the code the run started with; `resume --runbook`
//! re-reads the files, and a module that changed what the journal recorded is divergence like
//! a changed runbook. At run time the stored sources are compiled into the engine: `import`
//! statements find them by path, and each alias of the runbook is also registered as a static
//! module, so that closures called later (a `parallel` branch) still reach `ip::...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{ASTNode, Stmt, AST};

use super::Error;

pub use crate::journal::ModuleFile;

/// An `import` statement: its path, alias and where it is.
struct Import {
    path: String,
    alias: Option<String>,
    line: usize,
    column: usize,
}

fn imports_of(ast: &AST) -> Vec<Import> {
    let mut out = Vec::new();
    ast.walk(&mut |nodes| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = nodes.last() {
            let literal = x.0.get_literal_value(None);
            if let Some(path) = literal.and_then(|v| v.into_immutable_string().ok()) {
                let alias = Some(x.1.name.to_string()).filter(|a| !a.is_empty());
                out.push(Import {
                    path: path.to_string(),
                    alias,
                    line: pos.line().unwrap_or(0),
                    column: pos.position().unwrap_or(0),
                });
            }
        }
        true
    });
    out
}

/// Where `import` finds `path` from the file `importer`: beside it, then on the search path.
fn locate(importer: &Path, path: &str) -> Option<PathBuf> {
    let with_ext = if Path::new(path).extension().is_some() {
        PathBuf::from(path)
    } else {
        PathBuf::from(format!("{path}.rhai"))
    };
    let beside = importer.parent().unwrap_or(Path::new(".")).join(&with_ext);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("LIFEBOAT_MODULE_PATH")
        .map(|dirs| std::env::split_paths(&dirs).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(&with_ext))
        .find(|p| p.is_file())
}

/// Reads every module `ast` (from the file `path`) imports, and theirs, each before whoever
/// imports it. `compile` turns a module's source into its AST (errors name the module file).
pub fn resolve(
    path: &str,
    ast: &AST,
    compile: &dyn Fn(&str, &str) -> Result<AST, Error>,
) -> Result<Vec<ModuleFile>, Error> {
    let mut out: Vec<ModuleFile> = Vec::new();
    visit(Path::new(path), ast, compile, &mut out, &mut Vec::new())?;
    Ok(out)
}

fn visit(
    importer: &Path,
    ast: &AST,
    compile: &dyn Fn(&str, &str) -> Result<AST, Error>,
    out: &mut Vec<ModuleFile>,
    stack: &mut Vec<String>,
) -> Result<(), Error> {
    for import in imports_of(ast) {
        let at = |message: String| Error::Compile {
            path: importer.display().to_string(),
            line: import.line,
            column: import.column,
            message,
        };
        // Only Rhai files are modules: an import never reads a configuration file or a key.
        if Path::new(&import.path)
            .extension()
            .is_some_and(|e| e != "rhai")
        {
            return Err(at(format!(
                "import {:?}: a module is a .rhai file",
                import.path
            )));
        }
        let file = locate(importer, &import.path).ok_or_else(|| {
            at(format!(
                "import {:?}: no file {:?} beside {} nor in LIFEBOAT_MODULE_PATH",
                import.path,
                import.path,
                importer.display()
            ))
        })?;
        let file_name = file.display().to_string();
        if let Some(known) = out.iter().find(|m| m.import == import.path) {
            if Path::new(&known.file) != file {
                return Err(at(format!(
                    "import {:?} means {} here and {} elsewhere: give the modules different paths",
                    import.path, file_name, known.file
                )));
            }
            continue;
        }
        if stack.contains(&file_name) {
            return Err(at(format!(
                "import {:?}: modules import each other in a circle ({} -> {file_name})",
                import.path,
                stack.join(" -> ")
            )));
        }
        let source = std::fs::read_to_string(&file).map_err(|e| Error::RunbookUnreadable {
            path: file_name.clone(),
            message: e.to_string(),
        })?;
        let module_ast = compile(&file_name, &source)?;
        stack.push(file_name.clone());
        visit(&file, &module_ast, compile, out, stack)?;
        stack.pop();
        out.push(ModuleFile {
            import: import.path,
            file: file_name,
            source,
        });
    }
    Ok(())
}

/// Compiles the stored modules into `engine`: a resolver for the `import` statements, and the
/// aliases the runbook's own imports give them as static modules.
///
/// Returns the AST that closures are called against from outside the script (a `parallel`
/// branch, an `undo`): the runbook's functions over those of every module. A closure created
/// inside a module function is one of the module's functions, which a call from outside finds
/// only there. (A runbook function with the same name and arity as a module's hides it.)
pub fn install(
    engine: &mut rhai::Engine,
    runbook: &AST,
    modules: &[ModuleFile],
) -> Result<AST, Error> {
    let mut callable = AST::empty();
    let mut resolver = rhai::module_resolvers::StaticModuleResolver::new();
    let mut compiled: BTreeMap<String, rhai::Shared<rhai::Module>> = BTreeMap::new();
    for m in modules {
        // Each module sees those before it (its own imports) through the resolver so far.
        engine.set_module_resolver(resolver.clone());
        let fail = |line: usize, column: usize, message: String| Error::Compile {
            path: m.file.clone(),
            line,
            column,
            message,
        };
        let mut ast = engine.compile(&m.source).map_err(|e| {
            fail(
                e.position().line().unwrap_or(0),
                e.position().position().unwrap_or(0),
                e.err_type().to_string(),
            )
        })?;
        ast.set_source(m.file.as_str());
        callable = callable.merge(&ast.clone_functions_only());
        let mut module =
            rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, engine).map_err(|e| {
                fail(
                    e.position().line().unwrap_or(0),
                    e.position().position().unwrap_or(0),
                    super::diagnostics::plain_message(&e),
                )
            })?;
        module.set_id(m.file.as_str());
        resolver.insert(m.import.clone(), module.clone());
        compiled.insert(m.import.clone(), module.into());
    }
    for import in imports_of(runbook) {
        if let (Some(alias), Some(module)) = (import.alias, compiled.get(&import.path)) {
            engine.register_static_module(alias, module.clone());
        }
    }
    engine.set_module_resolver(resolver);
    Ok(callable.merge(runbook))
}

/// The functions of the module each alias of `ast` names, for `check`'s unknown-function test
/// of qualified calls (`ip::move_one`).
pub fn functions_by_alias(
    ast: &AST,
    modules: &[ModuleFile],
    compile: &dyn Fn(&str, &str) -> Result<AST, Error>,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut out = BTreeMap::new();
    for import in imports_of(ast) {
        let (Some(alias), Some(m)) = (
            import.alias,
            modules.iter().find(|m| m.import == import.path),
        ) else {
            continue;
        };
        let module_ast = compile(&m.file, &m.source)?;
        let names = module_ast
            .iter_functions()
            .filter(|f| f.access != rhai::FnAccess::Private)
            .map(|f| f.name.to_string())
            .collect();
        out.insert(alias, names);
    }
    Ok(out)
}
