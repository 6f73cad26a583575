//! Bad input: exact messages and exit codes, and nothing lost.

use crate::support::Env;

#[test]
fn syntax_error_names_file_line_and_column() {
    let env = Env::new();
    let rb = env.runbook("broken.rhai", "step(\"a\", || 1);\nlet x = ;\n");
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(out.stderr, format!("error: {rb}:2:9: Unexpected ';'\n"));
    assert_eq!(out.stdout, "");
    let out = env.run(&["run", &rb]);
    out.expect_code(2);
    assert_eq!(out.stderr, format!("error: {rb}:2:9: Unexpected ';'\n"));
    // Nothing was created.
    assert_eq!(env.run(&["status"]).stdout, "no runs\n");
}

#[test]
fn undefined_variable_and_disabled_eval_are_compile_errors() {
    let env = Env::new();
    let rb = env.runbook("undef.rhai", "step(\"a\", || pcc);\n");
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {rb}:1:14: Undefined variable: pcc\n")
    );
    let rb = env.runbook("eval.rhai", "eval(\"1\");\n");
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {rb}:1:1: reserved keyword 'eval' is disabled\n")
    );
}

#[test]
fn missing_unreadable_runbook() {
    let env = Env::new();
    let out = env.run(&["check", "no/such.rhai"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: no/such.rhai: cannot read the runbook: No such file or directory (os error 2)\n"
    );
}

const DECLARED: &str = r#"runbook(#{
    name: "relink",
    description: "Relink the datastores",
    rto: "4h",
    params: #{
        pcc: #{ type: "string", help: "source PCC" },
        filers: #{ type: "list", help: "filer ids", default_value: [] },
        wait: #{ type: "duration", help: "how long to wait", default_value: "6h" },
    },
});
step("show", || `${params.pcc} ${params.filers.len()} ${params.wait}`)
"#;

#[test]
fn check_prints_the_declaration_without_running_anything() {
    let env = Env::new();
    let rb = env.runbook("relink.rhai", DECLARED);
    let out = env.run(&["check", &rb]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!(
            "{rb}: ok\nname: relink\ndescription: Relink the datastores\nrto: 4h\nparameters:\n  filers  list      default []        filer ids\n  pcc     string    required          source PCC\n  wait    duration  default \"6h\"      how long to wait\nuses: nothing outside lifeboat\n"
        )
    );
    assert!(!env.db().exists(), "check opens no store");
}

#[test]
fn parameters_are_checked_before_any_step_runs() {
    let env = Env::new();
    let rb = env.runbook("relink.rhai", DECLARED);
    let cases: &[(&[&str], &str)] = &[
        (&[], "error: parameter pcc: missing required string parameter (source PCC)\n"),
        (&["-p", "pcc=x", "-p", "wait=soon"], "error: parameter wait: expected a duration such as 30s or 1h 30m: expected number at 0\n"),
        (&["-p", "pcc=x", "-p", "filer=1"], "error: parameter filer: unknown parameter (declared: filers, pcc, wait)\n"),
        (&["-p", "pcc"], "error: parameter pcc: expected name=value\n"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["run", rb.as_str()];
        all.extend_from_slice(args);
        let out = env.run(&all);
        out.expect_code(2);
        assert_eq!(&out.stderr, expected, "for {args:?}");
    }
    assert_eq!(env.run(&["status"]).stdout, "no runs\n");
    let out = env.run(&["run", &rb, "-p", "pcc=pcc-1", "-p", "filers=12,13"]);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().nth(1), Some("\"pcc-1 2 6h\""));
}

#[test]
fn wrongly_typed_parameter() {
    let env = Env::new();
    let rb = env.runbook(
        "n.rhai",
        "runbook(#{ params: #{ n: #{ type: \"int\", help: \"how many\" } } });\nparams.n\n",
    );
    let out = env.run(&["run", &rb, "-p", "n=many"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: parameter n: expected an integer, got \"many\"\n"
    );
}

#[test]
fn bad_declaration_is_located() {
    let env = Env::new();
    let rb = env.runbook(
        "decl.rhai",
        "\nrunbook(#{ name: \"x\", params: #{ n: #{ type: \"number\", help: \"\" } } });\n",
    );
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(out.stderr, format!("error: {rb}:2:1: parameter n: unknown type \"number\" (string, int, float, bool, list, map, duration)\n"));
}

#[test]
fn unknown_run_id() {
    let env = Env::new();
    for cmd in ["resume", "status", "log", "abort", "export"] {
        let out = env.run(&[cmd, "20991231-000000-dead"]);
        out.expect_code(2);
        assert_eq!(
            out.stderr,
            "error: unknown run id \"20991231-000000-dead\" (`lifeboat status` lists the runs)\n",
            "{cmd}"
        );
    }
    let out = env.run(&["approve", "../etc", "go"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: unknown run id \"../etc\" (`lifeboat status` lists the runs)\n"
    );
}

#[test]
fn corrupt_store_is_a_clear_error_not_a_panic() {
    let env = Env::embedded();
    std::fs::create_dir_all(env.db()).unwrap();
    std::fs::write(env.db().join("conf"), b"this is not sled").unwrap();
    std::fs::write(env.db().join("db"), vec![0xA5u8; 4096]).unwrap();
    let out = env.run(&["status"]);
    out.expect_code(2);
    let db = env.db();
    let db = db.display();
    assert!(
        out.stderr.starts_with(&format!(
            "error: the journal store {db} could not be opened: "
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(&format!("It may be damaged (for instance by an unclean stop). Move it aside (mv {db} {db}.damaged), then restore runs you exported with `lifeboat import`\n")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
}

#[test]
fn locked_store_without_an_owner_that_answers() {
    let env = Env::embedded();
    // Hold the store the way a process that serves no control socket would.
    let _held = lifeboat::journal::Journal::open(&env.db()).unwrap();
    let out = env.run(&["status"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: the journal store {} is in use by another lifeboat process\n",
            env.db().display()
        )
    );
}

#[test]
fn a_second_run_on_a_busy_store_gets_a_clear_message() {
    let env = Env::embedded();
    let rb = env.runbook("gate.rhai", "approve(\"go\", \"ok?\");\n");
    let mut child = env.spawn(&["run", &rb]);
    let run = crate::support::read_run_id(&mut child);
    env.wait_for("the gate", || {
        env.run(&["status"]).stdout.contains("waiting for approval")
    });
    let out = env.run(&["run", &rb]);
    out.expect_code(2);
    let pid = child.id();
    assert_eq!(
        out.stderr,
        format!("error: the journal store {} is in use by lifeboat process {pid} (running {run}); a second run needs its own --db (or wait for that one to finish)\n", env.db().display())
    );
    env.run(&["abort", &run]).expect_code(0);
    crate::support::finish(child);
}

#[test]
fn endless_loop_ends_the_run_with_its_location() {
    let env = Env::new();
    let rb = env.runbook(
        "loop.rhai",
        "step(\"a\", || 1);\nlet x = 0;\nloop { x += 1; }\n",
    );
    let out = env.run(&["run", &rb, "--max-operations", "100000"]);
    out.expect_code(1);
    let run = out.stdout.trim().to_string();
    assert!(
        out.stderr.contains(&format!("run {run} failed: {rb}:3:10: the runbook exceeded its limit of 100000 operations (an endless loop?); raise it with --max-operations\n")),
        "{}",
        out.stderr
    );
    // The journal is intact and says so.
    let status = env.status(&run);
    assert_eq!(status["steps"][0]["state"], "succeeded");
    assert_eq!(status["state"]["state"], "failed");
}

#[test]
fn runaway_memory_ends_the_run_with_its_location() {
    let env = Env::new();
    let rb = env.runbook("mem.rhai", "let s = \"x\";\nloop { s += s; }\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "{rb}:2:10: Length of string exceeded its size limit"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("raise it with --max-string-size or --max-collection-size"),
        "{}",
        out.stderr
    );
}

#[test]
fn effects_outside_a_step_and_nested_steps_are_refused() {
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", "127.0.0.1:9");
    let rb = env.runbook("outside.rhai", "test_effect(\"x\");\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(out.stderr.contains(&format!("failed: {rb}:1:1: test_effect changes things outside lifeboat and must be called inside a step, so that it runs once\n")), "{}", out.stderr);
    let rb = env.runbook(
        "nested.rhai",
        "step(\"outer\", || step(\"inner\", || 1));\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "step() cannot be called inside the body of step \"outer\"; call it between steps"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn sandbox_has_no_files_processes_or_network() {
    let env = Env::new();
    for (src, what) in [
        (
            "import \"os\" as os;\n",
            "import \"os\": no file \"os\" beside ",
        ),
        (
            "import \"/etc/passwd.txt\" as p;\n",
            "import \"/etc/passwd.txt\": a module is a .rhai file",
        ),
        ("open_file(\"/etc/passwd\")\n", "unknown function open_file"),
        (
            "timestamp()\n",
            "timestamp() is not available in runbooks: use now(), which is journaled",
        ),
    ] {
        let rb = env.runbook("sandbox.rhai", src);
        let out = env.run(&["run", &rb]);
        assert_ne!(out.code, 0, "{src}");
        assert!(out.stderr.contains(what), "{src}: {}", out.stderr);
    }
}

#[test]
fn a_typo_is_found_before_the_run_not_after_the_wait() {
    let env = Env::new();
    let rb = env.runbook(
        "typo.rhai",
        "step(\"relink\", || 1);\nsleep(\"6h\");\nstep(\"move\", || ovh.ip_mvoe(\"ns1\", \"1.2.3.4/32\"));\n",
    );
    let out = env.run(&["check", &rb]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {rb}:3:21: unknown function ip_mvoe (did you mean ip_move?)\n")
    );
    env.run(&["run", &rb]).expect_code(2);
    assert_eq!(env.run(&["status"]).stdout, "no runs\n");
}

/// On a terminal a run ends with its readable lines only; the raw JSON result comes with
/// `--json`, and always when stdout is a pipe (scripts). `script` gives the run a terminal.
#[test]
fn the_raw_result_is_printed_on_a_terminal_only_when_asked() {
    let env = crate::support::Env::new();
    let rb = env.runbook("answer.rhai", "step(\"a\", || 41 + 1)\n");
    let on_terminal = |extra: &str| {
        let command = format!(
            "{} --db {} run {rb}{extra}",
            crate::support::BIN,
            env.db().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .output()
            .unwrap_or_else(|_| panic!("{}", crate::support::missing("script")));
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
    };
    let plain = on_terminal("");
    assert!(plain.ends_with(" succeeded\n"), "{plain}");
    assert!(!plain.lines().any(|l| l == "42"), "{plain}");
    let json = on_terminal(" --json");
    assert!(json.ends_with(" succeeded\n42\n"), "{json}");
    // Piped: the id first, the result last, as scripts read them.
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().last(), Some("42"));
}

/// A runbook that uses the OVH API is refused before any run exists when no endpoint is
/// configured; `check` reports the same without failing the runbook itself.
#[test]
fn a_missing_ovh_endpoint_is_refused_before_a_run_exists() {
    let env = Env::new().var("HOME", env_home());
    let rb = env.runbook("ovh.rhai", "step(\"read\", || ovh.get([\"me\"]))\n");
    let without_ovh = |args: &[&str]| {
        let mut cmd = env.command(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("OVH_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(env.dir.path()).output().unwrap()
    };
    let expected = format!("{rb} uses the OVH API, and no OVH endpoint configured: set OVH_ENDPOINT (ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca, or a base URL such as the simulator's) or `endpoint=` in the [default] section of ovh.conf (read from the OVH_* environment variables, then ./ovh.conf, ~/.ovh.conf, /etc/ovh.conf); nothing was started");
    let out = without_ovh(&["run", &rb]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {expected}\n")
    );
    assert!(out.stdout.is_empty(), "no run id: no run");
    assert!(!env.db().exists(), "the store was not even opened");
    let out = without_ovh(&["check", &rb]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.ends_with(&format!(
            "uses: the OVH API (ovh)\nconfiguration: `lifeboat run` would refuse it here: {expected}\n"
        )),
        "{stdout}"
    );
}

fn env_home() -> String {
    let home = std::env::temp_dir().join("lifeboat-test-empty-home");
    std::fs::create_dir_all(&home).unwrap();
    home.display().to_string()
}

/// `check` on a machine that has the OVH settings and no mail settings: what a runbook uses,
/// and the settings it lacks.
#[test]
fn check_says_what_a_runbook_uses_and_what_is_missing() {
    let env = Env::new()
        .var("HOME", env_home())
        .var("XDG_CONFIG_HOME", format!("{}/.config", env_home()))
        .var("OVH_ENDPOINT", "http://127.0.0.1:9/1.0")
        .var("OVH_APPLICATION_KEY", "k")
        .var("OVH_APPLICATION_SECRET", "s")
        .var("OVH_CONSUMER_KEY", "c");
    let ovh_only = env.runbook("ovh.rhai", "step(\"read\", || ovh.get([\"me\"]))\n");
    let out = env.run(&["check", &ovh_only]);
    out.expect_code(0);
    assert!(
        out.stdout
            .ends_with("uses: the OVH API (ovh)\nconfiguration: what it uses is configured here\n"),
        "{}",
        out.stdout
    );
    let config = format!("{}/.config/lifeboat/config.toml", env_home());
    let missing = format!("IMAP is not configured here (the [imap] section of {config}, or LIFEBOAT_IMAP_HOST and the other LIFEBOAT_IMAP_* variables: docs/email.md)");

    // wait_email with no parameter that declares it: always needed.
    let always = env.runbook(
        "always.rhai",
        "step(\"wait\", || wait_email(#{ subject: \"x\" }));\nstep(\"read\", || ovh.get([\"me\"]))\n",
    );
    let out = env.run(&["check", &always]);
    out.expect_code(0);
    assert!(
        out.stdout.ends_with(&format!(
            "uses: the OVH API (ovh), IMAP (wait_email)\nconfiguration: `lifeboat run` would refuse it here: {always} calls wait_email, and {missing}; nothing was started\n"
        )),
        "{}",
        out.stdout
    );
    let out = env.run(&["run", &always]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {always} calls wait_email, and {missing}; nothing was started\n")
    );

    // Needed only with the parameter that declares it (`needs: "imap"`).
    let gated = env.runbook(
        "gated.rhai",
        "runbook(#{ name: \"gated\", params: #{ email: #{ type: \"bool\", help: \"wait for the email\", default_value: false, needs: \"imap\" } } });\nif params.email { step(\"wait\", || wait_email(#{ subject: \"x\" })); }\nstep(\"done\", || 1)\n",
    );
    let out = env.run(&["check", &gated]);
    out.expect_code(0);
    assert!(
        out.stdout.ends_with(&format!(
            "  email  bool      default false     wait for the email (needs [imap])\nuses: IMAP (wait_email)\nconfiguration: it calls wait_email only with -p email, and {missing}; with it `lifeboat run` refuses it here\n"
        )),
        "{}",
        out.stdout
    );
    env.run(&["run", &gated]).expect_code(0);
    let out = env.run(&["run", &gated, "-p", "email=true"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: {gated} calls wait_email with -p email=true, and {missing}; nothing was started. Configure IMAP, or run without -p email=true\n")
    );
    let runs = env.run(&["status", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "the refused run was never created: {runs}"
    );
}

/// What the shared store and the way back refuse, and how they say it.
#[test]
fn store_worker_verify_and_undo_refusals_say_what_to_do() {
    let env = Env::embedded();
    let out = env.run(&["--store", "mysql://db.example/lb", "status"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: --store mysql://db.example/lb: not a store lifeboat knows; give a postgres:// URL (or nothing, for the embedded store in --db)\n"
    );
    let out = env.run(&["worker"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: lifeboat worker drives the runs of a shared store: give --store postgres://... (or LIFEBOAT_STORE); on the embedded store, `lifeboat daemon` resumes runs left behind\n"
    );
    let shared = Env::on_postgres();
    let out = shared.run(&["verify"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: `lifeboat verify` checks the embedded store (--db); a PostgreSQL store is checked by PostgreSQL itself\n"
    );

    let rb = env.runbook("one.rhai", "step(\"only\", || 1)\n");
    let plan = env.run(&["run", &rb, "--plan"]);
    plan.expect_code(0);
    let plan = plan.stdout.lines().next().unwrap().to_string();
    let out = env.run(&["undo", &plan]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: run {plan} cannot be undone: it was a plan: it changed nothing, so there is nothing to undo\n")
    );
    let out = env.run(&["undo", &plan, "--detach"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: undo --detach: an undo runs here (start it on the host that should drive it)\n"
    );
}

/// `lifeboat log RUN | head -1`: the reader goes away; lifeboat stops quietly with the status
/// of a tool killed by SIGPIPE (141), no panic.
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::BufRead as _;
    let env = crate::support::Env::new();
    let rb = env.runbook("long.rhai", "for i in 0..2000 { step(`s${i}`, || i); }\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap().to_string();
    let mut child = env.spawn(&["log", &run]);
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("run started"), "{first}");
    // The reader is gone (its end of the pipe dropped with the BufReader).
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
