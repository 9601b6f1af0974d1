//! The `--output-format json-lines` stream, which the commands that do not
//! stream their progress treat as `json`.

use serde_json::Value;

use obnam_test_support::BackupWorld;

#[test]
fn json_lines_is_json_for_commands_that_do_not_stream() {
    let w = BackupWorld::new("c");
    w.file("a", b"a");
    w.backup(&[]).ok();
    w.file("b", b"b");
    w.backup(&[]).ok();
    for command in [
        &["generations"][..],
        &["genids"],
        &["clients"],
        &["ls"],
        &["plugins"],
    ] {
        let as_json = w
            .obnam(&[command, &["--output-format", "json"]].concat())
            .ok();
        let as_lines = w
            .obnam(&[command, &["--output-format", "json-lines"]].concat())
            .ok();
        assert_eq!(as_lines.stdout, as_json.stdout, "{command:?}");
        serde_json::from_str::<Value>(&as_json.stdout).unwrap();
    }
}
