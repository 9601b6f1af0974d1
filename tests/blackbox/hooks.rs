//! Hooks across plugins: typed payloads in priority order, subscribing in
//! any load order, JSON hooks and filter hooks.

use obnam_test_support::TestEnv;

#[test]
fn callbacks_run_in_priority_order_with_ties_in_registration_order() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env.run_with(&dir, ["alpha-hook", "start"]).ok();
    // beta registers 750, 500, 250 in that order; alpha (loaded first) 500.
    assert_eq!(
        run.stdout,
        "counter=4 trail=start beta250 alpha500 beta500 beta750\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn subscriber_loaded_before_the_hook_creator_is_still_bound() {
    let env = TestEnv::new();
    let early = env.plugin_dir("early", &["beta"]);
    let late = env.plugin_dir("late", &["alpha"]);
    let run = obnam_test_support::run(
        env.obnam()
            .arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(&early)
            .arg("--plugin-dir")
            .arg(&late)
            .args(["alpha-hook", "x"]),
    )
    .ok();
    // beta is enabled first now, so it wins the tie at 500.
    assert_eq!(
        run.stdout,
        "counter=4 trail=x beta250 beta500 alpha500 beta750\n"
    );
}

#[test]
fn only_the_creator_runs_when_no_one_subscribes() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let run = env.run_with(&dir, ["alpha-hook", "solo"]).ok();
    assert_eq!(run.stdout, "counter=1 trail=solo alpha500\n");
}

#[test]
fn a_callback_error_stops_the_hook_and_the_command() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env
        .run_with(&dir, ["alpha-hook", "fail"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.code, 1);
    // beta is not one of obnam's own plugins: its error names it.
    assert_eq!(
        run.stderr,
        "ERROR: plugin 'beta' failed in hook 'alpha-event': beta refuses the event\n"
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn json_hook_payload_is_changed_by_another_plugin() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env.run_with(&dir, ["alpha-json"]).ok();
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"seen": ["beta"], "beta": {"answer": 42}})
    );
}

#[test]
fn filters_run_ascending_on_write_and_reverse_on_read() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env.run_with(&dir, ["alpha-filter", "hello"]).ok();
    // brackets (250) first, then reverse (750); read undoes reverse first.
    assert_eq!(
        run.stdout,
        "tags=brackets,reverse\nstored=]olleh[\nread=hello\n"
    );
}

#[test]
fn a_filter_that_leaves_data_unchanged_records_no_tag() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    // Data containing "plain" is left alone by reverse; brackets still applies.
    let run = env.run_with(&dir, ["alpha-filter", "plain"]).ok();
    assert_eq!(run.stdout, "tags=brackets\nstored=[plain]\nread=plain\n");
}

#[test]
fn reading_data_that_needs_a_missing_filter_names_the_tag() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env
        .run_with(&dir, ["alpha-unfilter", "olleh", "encrypt"])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        "ERROR: object test/2 needs the 'encrypt' filter; no loaded plugin provides it\n"
    );
    // With only alpha loaded, beta's filters are missing too.
    let alone = env.plugin_dir("alone", &["alpha"]);
    let run = env
        .run_with(&alone, ["alpha-unfilter", "]olleh[", "brackets", "reverse"])
        .fails();
    assert!(
        run.stderr.contains("needs the 'reverse' filter"),
        "{}",
        run.stderr
    );
    // And with beta loaded the same bytes read back.
    let run = env
        .run_with(&dir, ["alpha-unfilter", "]olleh[", "brackets", "reverse"])
        .ok();
    assert_eq!(run.stdout, "hello\n");
}

#[test]
fn a_filter_error_on_read_is_reported() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env
        .run_with(&dir, ["alpha-unfilter", "!x", "reverse"])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        "ERROR: plugin 'beta' failed in filter 'reverse' reading test/2: \
         test/2: reversed data may not start with '!'\n"
    );
}

/// A callback that calls the hook it handles, for ever, is stopped with
/// an error naming the hook and its plugins; the process overflowed its
/// stack and died of `SIGSEGV`, with no word of why.
#[test]
fn a_hook_that_calls_itself_for_ever_is_stopped_with_an_error() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["hostile"]);
    let run = env
        .run_with(&dir, ["hostile-recurse"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{run:#?}");
    assert!(
        errors[0].starts_with(
            "ERROR: plugin 'hostile' failed in hook 'hostile-echo': hook 'hostile-echo' was \
             called 64 calls deep: a callback calls, directly or through others, a hook it \
             handles (callbacks of plugins 'hostile')"
        ),
        "{run:#?}"
    );
}

/// A panic in a thread a plugin started itself, which no boundary call
/// catches, is reported, naming the plugin and the thread: plugin-api's
/// panic hook, which keeps Rust's panic text from the user, recorded it
/// for a boundary call that never came, and it left no trace.
#[test]
fn a_panic_in_a_plugins_own_thread_is_reported() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["hostile"]);
    let run = env.run_with(&dir, ["hostile-thread-panic"]).no_rust_panic();
    assert!(
        run.stderr.contains(
            "ERROR: plugin 'hostile' panicked in a thread of its own ('hostile-worker'): \
             the worker gives up (at tests/plugins/hostile/src/lib.rs:"
        ),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{run:#?}");
}

/// A `backup-finished` callback that prints (as the plugin guide shows)
/// prints on standard output as text, and on standard error when the
/// command's output is JSON: standard output then holds the one JSON
/// document, or the stream whose last line is the summary.
#[test]
fn a_callback_that_prints_leaves_json_output_alone() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let data = env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"content").unwrap();
    let repo = env.path().join("repo");
    let backup = |format: &str| {
        obnam_test_support::run(
            env.obnam()
                .env("OBNAM_TEST_BETA_REPORT", "1")
                .arg("--plugin-dir")
                .arg(&dir)
                .arg("--repository")
                .arg(&repo)
                .args(["--client-name", "c", "--output-format", format, "backup"])
                .arg(&data),
        )
        .ok()
    };
    let text = backup("text");
    assert!(
        text.stdout.contains("beta: backup finished: \""),
        "{text:#?}"
    );
    let json = backup("json");
    let doc: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:#?}"));
    assert!(doc["generation"].is_string(), "{doc}");
    assert!(
        json.stderr.contains("beta: backup finished: \""),
        "{json:#?}"
    );
    let lines = backup("json-lines");
    let last = lines.stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert_eq!(summary["type"], "summary", "{lines:#?}");
    for line in lines.stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(
        lines.stderr.contains("beta: backup finished: \""),
        "{lines:#?}"
    );
}
