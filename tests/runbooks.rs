//! What we ship is tested: every runbook in `runbooks/` and every example in the docs passes
//! `lifeboat check`, and the examples run.

use crate::support::Env;

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_runbook_passes_check() {
    let env = Env::new();
    let mut n = 0;
    for entry in std::fs::read_dir(repo("runbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let out = env.run(&["check", path.to_str().unwrap()]);
            out.expect_code(0);
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn the_example_runbook_runs() {
    let env = Env::new().var("LIFEBOAT_CLOCK", "1000");
    let out = env.run(&[
        "run",
        &repo("runbooks/example.rhai"),
        "-p",
        "target=rbx",
        "--approve",
        "all",
    ]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.lines().nth(1),
        Some("{\"items\":3,\"target\":\"rbx\"}")
    );
}

/// The ```rhai blocks of a markdown file.
fn rhai_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rhai") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn runbook_language_and_readme_examples_check_and_run() {
    let mut blocks =
        rhai_blocks(&std::fs::read_to_string(repo("docs/runbook-language.md")).unwrap());
    blocks.extend(rhai_blocks(
        &std::fs::read_to_string(repo("README.md")).unwrap(),
    ));
    assert!(blocks.len() >= 8, "found {} examples", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        // The shipped modules, for the examples that import them (the search path).
        let env = Env::new()
            .var("LIFEBOAT_CLOCK", "1000")
            .var("LIFEBOAT_MODULE_PATH", repo("runbooks"));
        let rb = env.runbook(&format!("example{i}.rhai"), block);
        env.run(&["check", &rb]).expect_code(0);
        if block.starts_with("// needs: ") {
            continue; // checked only: running it needs an OVH account or a mailbox (other tests run those)
        }
        let mut args = vec!["run", rb.as_str(), "--approve", "all"];
        if block.contains("source_pcc:") {
            args.extend(["-p", "source_pcc=pcc-1"]);
        }
        if block.contains("target: #{") {
            args.extend(["-p", "target=rbx"]);
        }
        let out = env.run(&args);
        // An example that shows a partial recovery ends as one (exit 4), and says so.
        let expected = if block.contains("warn(") || block.contains("recovered: false") {
            4
        } else {
            0
        };
        assert_eq!(out.code, expected, "example {i}:\n{block}\n{}", out.stderr);
    }
}
