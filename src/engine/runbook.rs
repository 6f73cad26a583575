//! Loading a runbook: read the file, compile it, and read its declaration (name, description,
//! target recovery time, parameters) without running any of it.
//!
//! A runbook declares itself with a `runbook(#{ ... })` call as its first statement. `check`
//! evaluates that one statement, alone, in an engine where nothing else exists; at run time the
//! same call is a no-op.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use std::collections::HashSet;

use rhai::{ASTNode, Dynamic, Expr, Map, Position, Scope, Stmt, AST};

use super::diagnostics::plain_message;
use super::modules::{self, ModuleFile};
use super::params::{ParamSpec, ParamType, Service};
use super::sandbox::{self, Limits};
use super::Error;

/// What a runbook says about itself.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Declaration {
    pub name: String,
    pub description: String,
    /// Target recovery time, in seconds.
    pub rto_secs: Option<u64>,
    pub params: BTreeMap<String, ParamSpec>,
}

/// A compiled runbook.
#[derive(Clone)]
pub struct Runbook {
    /// The path as given by the operator; it prefixes every error position.
    pub path: String,
    pub source: String,
    pub ast: Arc<AST>,
    pub declaration: Declaration,
    /// What the runbook will reach outside lifeboat, read from its code before it runs.
    pub needs: Needs,
    /// The modules it imports (and theirs), each before whoever imports it.
    pub modules: Vec<ModuleFile>,
}

/// The services a runbook's code uses, so that their configuration is checked before a run
/// is created (a missing endpoint is known before anything starts, not six hours in).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Needs {
    /// It uses the `ovh` object.
    pub ovh: bool,
    /// It calls `notify` (SMTP).
    pub smtp: bool,
    /// It calls `wait_email` (IMAP).
    pub imap: bool,
}

impl Needs {
    fn of(ast: &AST) -> Needs {
        let mut needs = Needs::default();
        ast.walk(&mut |nodes| {
            match nodes.last() {
                // (index, name, namespace, hash): an unqualified `ovh`.
                Some(ASTNode::Expr(Expr::Variable(v, ..))) if v.1 == "ovh" && v.2.is_empty() => {
                    needs.ovh = true;
                }
                Some(ASTNode::Expr(Expr::FnCall(call, _)))
                | Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => match call.name.as_str() {
                    "notify" => needs.smtp = true,
                    "wait_email" => needs.imap = true,
                    _ => {}
                },
                _ => {}
            }
            true
        });
        needs
    }
}

impl Runbook {
    /// Reads and compiles the runbook at `path`, with the modules it imports.
    pub fn load(path: &str, limits: &Limits) -> Result<Runbook, Error> {
        let source = std::fs::read_to_string(path).map_err(|e| Error::RunbookUnreadable {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Runbook::from_source(path, source, limits)
    }

    /// Compiles `source`, naming it `path` in errors; its imports are read from the files
    /// beside `path`.
    pub fn from_source(path: &str, source: String, limits: &Limits) -> Result<Runbook, Error> {
        Runbook::build(path, source, None, limits)
    }

    /// Compiles `source` with modules already read (a run's header, an embedded runbook):
    /// no file is touched.
    pub fn from_stored(
        path: &str,
        source: String,
        modules: Vec<ModuleFile>,
        limits: &Limits,
    ) -> Result<Runbook, Error> {
        Runbook::build(path, source, Some(modules), limits)
    }

    fn build(
        path: &str,
        source: String,
        stored: Option<Vec<ModuleFile>>,
        limits: &Limits,
    ) -> Result<Runbook, Error> {
        let engine = sandbox::new_engine(limits);
        let compile = |path: &str, source: &str| -> Result<AST, Error> {
            let mut ast = engine
                .compile_with_scope(&compile_scope(), source)
                .map_err(|e| Error::Compile {
                    path: path.to_string(),
                    line: e.position().line().unwrap_or(0),
                    column: e.position().position().unwrap_or(0),
                    message: e.err_type().to_string(),
                })?;
            ast.set_source(path);
            Ok(ast)
        };
        let ast = compile(path, &source)?;
        let modules = match stored {
            Some(modules) => modules,
            None => modules::resolve(path, &ast, &compile)?,
        };
        let aliases = modules::functions_by_alias(&ast, &modules, &compile)?;
        check_calls(&ast, path, &known_functions(&engine, &ast), &aliases)?;
        let mut needs = Needs::of(&ast);
        for m in &modules {
            let module_ast = compile(&m.file, &m.source)?;
            let module_aliases = modules::functions_by_alias(&module_ast, &modules, &compile)?;
            check_calls(
                &module_ast,
                &m.file,
                &known_functions(&engine, &module_ast),
                &module_aliases,
            )?;
            let n = Needs::of(&module_ast);
            needs.ovh |= n.ovh;
            needs.smtp |= n.smtp;
            needs.imap |= n.imap;
        }
        let declaration = read_declaration(&ast, path, limits)?;
        Ok(Runbook {
            needs,
            path: path.to_string(),
            source,
            ast: Arc::new(ast),
            declaration,
            modules,
        })
    }
}

/// The scope a runbook is compiled against: `params` exists (for strict variables) but as a
/// plain variable, so the optimizer cannot fold `params.x` into the empty placeholder.
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push("params", Map::new());
    scope.push("ovh", ());
    scope
}

/// The scope every runbook runs in: its parameters, as the constant `params`.
pub fn script_scope(params: Map) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("params", params);
    scope
}

fn first_call_name(stmt: &Stmt) -> Option<&str> {
    match stmt {
        Stmt::FnCall(call, _) => Some(call.name.as_str()),
        Stmt::Expr(expr) => match expr.as_ref() {
            Expr::FnCall(call, _) => Some(call.name.as_str()),
            _ => None,
        },
        _ => None,
    }
}

fn read_declaration(ast: &AST, path: &str, limits: &Limits) -> Result<Declaration, Error> {
    let default_name = std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    let Some(first) = ast.statements().first() else {
        return Ok(Declaration {
            name: default_name,
            ..Declaration::default()
        });
    };
    if first_call_name(first) != Some("runbook") {
        return Ok(Declaration {
            name: default_name,
            ..Declaration::default()
        });
    }
    let pos = first.position();
    let at = |message: String| Error::Declaration {
        path: path.to_string(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message,
    };

    // Evaluate the declaration alone, in an engine that knows only `runbook`.
    let captured: Arc<Mutex<Option<Map>>> = Arc::default();
    let mut engine = sandbox::new_engine(limits);
    let sink = captured.clone();
    engine.register_fn("runbook", move |decl: Map| {
        *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(decl);
    });
    let only_decl = AST::new([first.clone()], rhai::Module::new());
    engine
        .run_ast_with_scope(&mut compile_scope(), &only_decl)
        .map_err(|e| at(format!("runbook() takes one map: {}", plain_message(&e))))?;
    let decl = captured
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| at("runbook() takes one map".to_string()))?;

    let mut out = Declaration {
        name: default_name,
        ..Declaration::default()
    };
    for (key, value) in decl {
        match key.as_str() {
            "name" => out.name = string_field(&value, "name").map_err(at)?,
            "description" => out.description = string_field(&value, "description").map_err(at)?,
            "rto" => {
                let text = string_field(&value, "rto").map_err(at)?;
                let d = humantime::parse_duration(&text)
                    .map_err(|e| at(format!("rto: {e} (write it like \"4h\" or \"1h 30m\")")))?;
                out.rto_secs = Some(d.as_secs());
            }
            "params" => {
                let params = value.try_cast::<Map>().ok_or_else(|| {
                    at("params must be a map of name: #{ type, help, default_value }".into())
                })?;
                for (name, spec) in params {
                    let spec = param_spec(&name, spec).map_err(at)?;
                    out.params.insert(name.to_string(), spec);
                }
            }
            other => {
                return Err(at(format!(
                    "unknown field {other:?} in runbook() (known: name, description, rto, params)"
                )))
            }
        }
    }
    Ok(out)
}

fn string_field(value: &Dynamic, field: &str) -> Result<String, String> {
    value
        .clone()
        .into_immutable_string()
        .map(|s| s.to_string())
        .map_err(|t| format!("{field} must be a string, not {t}"))
}

fn param_spec(name: &str, spec: Dynamic) -> Result<ParamSpec, String> {
    let spec = spec
        .try_cast::<Map>()
        .ok_or_else(|| format!("parameter {name}: expected #{{ type: ..., help: ... }}"))?;
    let mut ty = None;
    let mut help = String::new();
    let mut default = None;
    let mut needs = Vec::new();
    for (key, value) in spec {
        match key.as_str() {
            "type" => {
                let t = string_field(&value, "type")?;
                ty = Some(ParamType::parse(&t).ok_or_else(|| {
                    format!("parameter {name}: unknown type {t:?} (string, int, float, bool, list, map, duration)")
                })?);
            }
            "help" => help = string_field(&value, "help")?,
            // `default` is a reserved word in Rhai, hence `default_value`.
            "default_value" => {
                default = Some(
                    rhai::serde::from_dynamic::<serde_json::Value>(&value)
                        .map_err(|e| format!("parameter {name}: default_value: {e}"))?,
                )
            }
            "needs" => {
                let names: Vec<Dynamic> = match value.clone().try_cast::<rhai::Array>() {
                    Some(list) => list,
                    None => vec![value],
                };
                for n in names {
                    let n =
                        string_field(&n, "needs").map_err(|e| format!("parameter {name}: {e}"))?;
                    needs.push(Service::parse(&n).ok_or_else(|| {
                        format!("parameter {name}: needs: unknown service {n:?} (smtp, imap)")
                    })?);
                }
            }
            other => {
                return Err(format!(
                    "parameter {name}: unknown field {other:?} (type, help, default_value, needs)"
                ))
            }
        }
    }
    let ty = ty.ok_or_else(|| format!("parameter {name}: missing type"))?;
    if let Some(d) = &default {
        ty.check(d)
            .map_err(|e| format!("parameter {name}: default_value: {e}"))?;
    }
    Ok(ParamSpec {
        ty,
        help,
        default,
        needs,
    })
}

/// Rhai's keyword functions, callable without being registered.
const RHAI_KEYWORDS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
];

/// Every name a runbook may call: Rhai's standard library and keywords, lifeboat's functions,
/// the runbook's own functions, and its variables (a variable may hold a function pointer).
fn known_functions(engine: &rhai::Engine, ast: &AST) -> HashSet<String> {
    let mut known: HashSet<String> = engine
        .gen_fn_signatures(true)
        .iter()
        .filter_map(|sig| sig.split('(').next())
        .map(|name| {
            name.trim_start_matches("get$")
                .trim_start_matches("set$")
                .to_string()
        })
        .collect();
    known.extend(RHAI_KEYWORDS.iter().map(|s| s.to_string()));
    known.extend(super::script_api::FUNCTIONS.iter().map(|s| s.to_string()));
    known.extend(super::ovh_api::METHODS.iter().map(|s| s.to_string()));
    known.extend(super::mail_api::FUNCTIONS.iter().map(|s| s.to_string()));
    for f in ast.iter_functions() {
        known.insert(f.name.to_string());
        known.extend(f.params.iter().map(|p| p.to_string()));
    }
    ast.walk(&mut |nodes| {
        if let Some(ASTNode::Stmt(Stmt::Var(var, ..))) = nodes.last() {
            known.insert(var.0.name.to_string());
        }
        true
    });
    known
}

/// Refuses a call to a function that does not exist, before anything runs: a typo in a step
/// that comes after a six-hour wait must not be found after the wait.
fn check_calls(
    ast: &AST,
    path: &str,
    known: &HashSet<String>,
    aliases: &BTreeMap<String, Vec<String>>,
) -> Result<(), Error> {
    let mut unknown: Option<(String, Position)> = None;
    ast.walk(&mut |nodes| {
        let (call, pos) = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos) | Expr::MethodCall(call, pos))) => {
                (call, *pos)
            }
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, *pos),
            _ => return true,
        };
        let name = call.name.as_str();
        if call.is_qualified() {
            // `ip::move_one`: the module imported as `ip` must have it.
            let root = call.namespace.root();
            return match aliases.get(root) {
                Some(fns) if !fns.iter().any(|f| f == name) => {
                    unknown = Some((format!("{root}::{name}"), pos));
                    false
                }
                _ => true,
            };
        }
        if call.is_operator_call() || name.starts_with("anon$") || known.contains(name) {
            return true;
        }
        unknown = Some((name.to_string(), pos));
        false
    });
    let Some((name, pos)) = unknown else {
        return Ok(());
    };
    let suggestion = known
        .iter()
        .map(|k| (strsim::osa_distance(k, &name), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    Err(Error::Compile {
        path: path.to_string(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message: format!("unknown function {name}{suggestion}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Runbook, Error> {
        Runbook::from_source("rb.rhai", src.to_string(), &Limits::default())
    }

    #[test]
    fn declaration_is_read_without_running_the_rest() {
        let rb = load(
            r#"runbook(#{ name: "relink", rto: "1h 30m", description: "d",
                 params: #{ pcc: #{ type: "string", help: "the PCC" }, n: #{ type: "int", help: "n", default_value: 2 } } });
               fail("the declaration alone is evaluated");"#,
        )
        .unwrap();
        assert_eq!(rb.declaration.name, "relink");
        assert_eq!(rb.declaration.rto_secs, Some(5400));
        assert_eq!(rb.declaration.params["n"].default, Some(2.into()));
        assert_eq!(rb.declaration.params["pcc"].ty, ParamType::String);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = load("let x = 1;\nlet y = ;").err().unwrap().to_string();
        assert!(e.starts_with("rb.rhai:2:9: "), "{e}");
        let e = load("runbook(#{ nme: \"x\" });").err().unwrap().to_string();
        assert_eq!(e, "rb.rhai:1:1: unknown field \"nme\" in runbook() (known: name, description, rto, params)");
        let e = load("runbook(#{ params: #{ a: #{ type: \"str\" } } });")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown type \"str\""), "{e}");
        let e = load("let a = b;").err().unwrap().to_string();
        assert_eq!(e, "rb.rhai:1:9: Undefined variable: b");
        let e = load("eval(\"1\")").err().unwrap().to_string();
        assert!(e.contains("eval"), "{e}");
    }

    #[test]
    fn unknown_functions_are_refused_before_running() {
        let e = load("step(\"a\", || 1);\nlet x = ovh.ip_mvoe(\"s\", \"1.2.3.4/32\");\n")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "rb.rhai:2:13: unknown function ip_mvoe (did you mean ip_move?)"
        );
        let e = load("stpe(\"a\", || 1);").err().unwrap().to_string();
        assert_eq!(e, "rb.rhai:1:1: unknown function stpe (did you mean step?)");
        // Script functions, closures, standard library and keywords are known.
        load("fn f(x) { x.len() + parse_int(\"1\") }\nlet g = |y| y * 2;\nlet h = Fn(\"f\");\nstep(\"s\", || f([1]) + g.call(2) + h.call([3]));\nlog(type_of(1));").unwrap();
    }

    #[test]
    fn default_name_is_the_file_stem() {
        let rb =
            Runbook::from_source("runbooks/move-ips.rhai", "1".into(), &Limits::default()).unwrap();
        assert_eq!(rb.declaration.name, "move-ips");
    }
}
