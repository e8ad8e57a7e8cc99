//! The README's flag table is the operator's reference: every flag the
//! broker takes has a row, and every row names a flag the broker takes.

use clap::CommandFactory;

#[test]
fn every_flag_has_a_readme_row_and_every_row_a_flag() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: Vec<&str> = readme
        .split("\n## Flags\n")
        .nth(1)
        .expect("a Flags section")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let rows: Vec<String> = table
        .iter()
        .filter_map(|l| l.strip_prefix("| `--"))
        .map(|l| l.split([' ', '`']).next().unwrap_or("").to_string())
        .collect();
    let flags: Vec<String> = ringmq::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|f| f != "help" && f != "version")
        .collect();
    for flag in &flags {
        assert!(
            rows.contains(flag),
            "--{flag} has no row in README's Flags table"
        );
    }
    for row in &rows {
        assert!(
            flags.contains(row),
            "README's Flags table names --{row}, which the broker does not take"
        );
    }
    assert!(flags.len() > 40, "{flags:?}");
}
