//! Runbook modules: `import "lib/x" as x;` resolved beside the runbook before anything runs,
//! checked, stored with the run and replayed from there.

use crate::support::{normalize, Env};

/// A runbook importing `lib/util.rhai`, with a gate between two module steps.
fn setup(env: &Env) -> (String, std::path::PathBuf) {
    let lib = env.dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let module = lib.join("util.rhai");
    std::fs::write(
        &module,
        "/// One durable step.\nfn stage(name) {\n    step(`stage ${name}`, || name)\n}\n",
    )
    .unwrap();
    let rb = env.runbook(
        "main.rhai",
        "import \"lib/util\" as u;\nu::stage(\"one\");\napprove(\"go\");\nlet all = parallel([\"a\", \"b\"], |x| u::stage(x));\nall\n",
    );
    (rb, module)
}

#[test]
fn a_run_replays_the_modules_it_started_with_and_an_edited_one_is_divergence() {
    let env = Env::new();
    let (rb, module) = setup(&env);
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    // The module is stored with the run: an export carries it.
    let export: serde_json::Value =
        serde_json::from_str(&env.run(&["export", &run]).stdout).unwrap();
    assert_eq!(export["run"]["modules"][0]["import"], "lib/util");
    assert!(export["run"]["modules"][0]["source"]
        .as_str()
        .unwrap()
        .contains("fn stage(name)"));

    // Edited on disk after the start: resume replays the stored code...
    std::fs::write(
        &module,
        "fn stage(name) {\n    step(`renamed ${name}`, || name)\n}\n",
    )
    .unwrap();
    env.run(&["approve", &run, "go"]).expect_code(0);
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert!(
        normalize(&out.stderr, &run).contains("  → stage a\n") && !out.stderr.contains("renamed"),
        "{}",
        out.stderr
    );

    // ...and resuming with the edited files is divergence, like an edited runbook.
    std::fs::write(
        &module,
        "/// One durable step.\nfn stage(name) {\n    step(`stage ${name}`, || name)\n}\n",
    )
    .unwrap();
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let second = out.stdout.trim().to_string();
    std::fs::write(
        &module,
        "fn stage(name) {\n    step(`renamed ${name}`, || name)\n}\n",
    )
    .unwrap();
    env.run(&["approve", &second, "go"]).expect_code(0);
    let out = env.run(&["resume", &second, "--runbook", &rb]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("the runbook no longer matches run's journal at position 0: the journal has step \"stage one\", the runbook now asks for step \"renamed one\""),
        "{}",
        out.stderr
    );
}

#[test]
fn check_names_the_module_file_and_line_of_an_error() {
    let env = Env::new();
    let lib = env.dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("bad.rhai"),
        "fn f() {\n    let x = 1;\n    x.nothere()\n}\n",
    )
    .unwrap();
    let rb = env.runbook("main.rhai", "import \"lib/bad\" as b;\nb::f()\n");
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: {}/lib/bad.rhai:3:7: unknown function nothere\n",
            env.dir.path().display()
        )
    );

    std::fs::write(lib.join("bad.rhai"), "fn f() {\n    1\n}\n").unwrap();
    let typo = env.runbook("typo.rhai", "import \"lib/bad\" as b;\nb::g()\n");
    let out = env.run(&["check", &typo]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {typo}:2:4: unknown function b::g\n")
    );

    let missing = env.runbook("missing.rhai", "import \"lib/none\" as n;\n1\n");
    let out = env.run(&["check", &missing]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {missing}:1:1: import \"lib/none\": no file \"lib/none\" beside {missing} nor in LIFEBOAT_MODULE_PATH\n")
    );
}

#[test]
fn a_failure_inside_a_module_names_the_module_file() {
    let env = Env::new();
    let lib = env.dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("boom.rhai"),
        "fn boom() {\n    step(\"boom\", || fail(\"it broke\"))\n}\n",
    )
    .unwrap();
    let rb = env.runbook("main.rhai", "import \"lib/boom\" as b;\nb::boom()\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    let module = format!("{}/lib/boom.rhai", env.dir.path().display());
    assert!(
        out.stderr.contains(&format!(
            "  ✗ boom: failed after 1 attempt(s): it broke (at {module}:2:21)\n"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn import_cycles_and_ambiguous_paths_are_refused_by_check() {
    let env = Env::new();
    let lib = env.dir.path().join("lib");
    std::fs::create_dir_all(lib.join("lib")).unwrap();
    std::fs::write(lib.join("a.rhai"), "import \"b\" as b;\nfn f() { 1 }\n").unwrap();
    std::fs::write(lib.join("b.rhai"), "import \"a\" as a;\nfn g() { 2 }\n").unwrap();
    let rb = env.runbook("cycle.rhai", "import \"lib/a\" as a;\na::f()\n");
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    let dir = env.dir.path().display();
    assert_eq!(
        out.stderr,
        format!("error: {dir}/lib/b.rhai:1:1: import \"a\": modules import each other in a circle ({dir}/lib/a.rhai -> {dir}/lib/b.rhai -> {dir}/lib/a.rhai)\n")
    );

    // "x" beside the runbook and "x" beside lib/y.rhai are two files.
    std::fs::write(env.dir.path().join("x.rhai"), "fn top() { 1 }\n").unwrap();
    std::fs::write(lib.join("x.rhai"), "fn inner() { 2 }\n").unwrap();
    std::fs::write(
        lib.join("y.rhai"),
        "import \"x\" as x;\nfn h() { x::inner() }\n",
    )
    .unwrap();
    let rb = env.runbook(
        "two.rhai",
        "import \"lib/y\" as y;\nimport \"x\" as x;\nx::top()\n",
    );
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {rb}:2:1: import \"x\" means {dir}/x.rhai here and {dir}/lib/x.rhai elsewhere: give the modules different paths\n")
    );
}
