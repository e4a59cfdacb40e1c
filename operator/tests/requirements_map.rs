//! The requirements map (`docs/requirements.md`) is kept honest: every
//! requirement R1-R17 has a section, every section names at least one test,
//! and every test it names exists, as `path/to/file.rs::test_name` relative
//! to the repository, where `fn test_name` carries a test attribute
//! (`#[test]`, `#[tokio::test]`, or a `#[test]` inside a test macro such as
//! `proptest!`). Renaming or deleting a mapped test fails this test, so the
//! map cannot drift from the code. Needs no cluster (`make unit` runs it).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The requirements the regulations give us (docs/requirements.md).
const REQUIREMENTS: std::ops::RangeInclusive<u32> = 1..=17;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate sits in the repository")
        .to_path_buf()
}

/// A test the map names: the file (relative to the repository) and the function.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TestRef {
    file: String,
    name: String,
}

impl std::fmt::Display for TestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.file, self.name)
    }
}

/// `path/file.rs::name` in backticks, or `None` for any other code span.
fn test_ref(span: &str) -> Option<TestRef> {
    let (file, name) = span.split_once(".rs::")?;
    let plain = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
    };
    (plain(file, &['/', '-', '.']) && plain(name, &[])).then(|| TestRef {
        file: format!("{file}.rs"),
        name: name.to_string(),
    })
}

/// The requirement a heading opens (`## R7. ...` or `## R7 ...`), if any.
fn requirement_heading(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("## R")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].chars().next();
    if digits.is_empty() || after.is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    digits.parse().ok()
}

/// Each requirement's section and the tests it names, in the order written.
/// A requirement with two sections is an error, named.
fn parse(map: &str) -> Result<BTreeMap<u32, Vec<TestRef>>, String> {
    let mut sections: BTreeMap<u32, Vec<TestRef>> = BTreeMap::new();
    let mut current = None;
    for line in map.lines() {
        if line.starts_with("## ") {
            current = requirement_heading(line);
            if let Some(r) = current
                && sections.insert(r, Vec::new()).is_some()
            {
                return Err(format!("R{r} has two sections"));
            }
            continue;
        }
        let Some(r) = current else { continue };
        // Code spans are between pairs of backticks.
        for span in line.split('`').skip(1).step_by(2) {
            if let Some(t) = test_ref(span) {
                sections.entry(r).or_default().push(t);
            }
        }
    }
    Ok(sections)
}

/// Whether `source` defines `fn name` under a test attribute. The lines
/// above the function are read back over attributes, comments and blank
/// lines; one of the attributes must be a test.
fn defines_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    let defines = |line: &str| {
        let line = line.trim_start();
        [format!("fn {name}("), format!("fn {name}<")]
            .iter()
            .any(|d| line.starts_with(d.as_str()) || line.contains(&format!(" {d}")))
    };
    lines.iter().enumerate().any(|(i, line)| {
        defines(line)
            && lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| {
                    l.is_empty() || l.starts_with("//") || l.starts_with("#[") || l.ends_with(")]")
                })
                .any(|l| {
                    l == "#[test]"
                        || l.starts_with("#[tokio::test")
                        || l.contains("::test]")
                        || l.contains("::test(")
                })
    })
}

/// Everything wrong with `map`, read against the files under `root`.
fn problems(map: &str, root: &Path) -> Vec<String> {
    let sections = match parse(map) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for r in REQUIREMENTS {
        match sections.get(&r) {
            None => problems.push(format!("R{r} has no section (`## R{r}. ...`)")),
            Some(tests) if tests.is_empty() => {
                problems.push(format!("R{r} names no test that fails when it is broken"))
            }
            Some(_) => {}
        }
    }
    for (r, tests) in &sections {
        if !REQUIREMENTS.contains(r) {
            problems.push(format!("R{r} is not a requirement (R1-R17)"));
        }
        for t in tests {
            let relative = Path::new(&t.file);
            if relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                problems.push(format!("R{r}: {t}: the path must be inside the repository"));
                continue;
            }
            match std::fs::read_to_string(root.join(relative)) {
                Err(e) => problems.push(format!("R{r}: {t}: cannot read {}: {e}", t.file)),
                Ok(source) if !defines_test(&source, &t.name) => {
                    problems.push(format!("R{r}: {t}: no test `fn {}` in {}", t.name, t.file))
                }
                Ok(_) => {}
            }
        }
    }
    problems
}

#[test]
fn every_requirement_names_tests_that_exist() {
    let path = repo_root().join("docs/requirements.md");
    let map = std::fs::read_to_string(&path).expect("docs/requirements.md is readable");
    let problems = problems(&map, &repo_root());
    assert!(
        problems.is_empty(),
        "docs/requirements.md does not match the code:\n  {}",
        problems.join("\n  ")
    );
}

// The checker itself, on maps written here.

/// A map of every requirement, each naming `test` in `file`.
fn whole_map(file: &str, test: &str) -> String {
    REQUIREMENTS
        .map(|r| format!("## R{r}. something\n\nTests: `{file}::{test}`\n\n"))
        .collect()
}

/// A repository of one file, in a directory of its own.
fn repository(file: &str, source: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "requirements-map-{}-{}",
        std::process::id(),
        file.replace('/', "-")
    ));
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).expect("temp dir");
    std::fs::write(&path, source).expect("write the source");
    dir
}

const SOURCE: &str = "
/// Holds.
#[tokio::test]
async fn a_tokio_test() {}

#[test]
#[ignore = \"slow\"]
fn an_ignored_test() {}

proptest! {
    // Inside a test macro.
    #[test]
    fn a_property(x in 0u8..3) {}
}

fn a_helper() {}

#[test]
fn calls_a_helper() { a_helper(); }
";

#[test]
fn a_complete_map_of_existing_tests_passes() {
    let root = repository("a/src/lib.rs", SOURCE);
    for test in ["a_tokio_test", "an_ignored_test", "a_property"] {
        let map = whole_map("a/src/lib.rs", test);
        assert_eq!(problems(&map, &root), Vec::<String>::new(), "{test}");
    }
}

#[test]
fn a_renamed_test_or_a_helper_is_named() {
    let root = repository("b/src/lib.rs", SOURCE);
    let renamed = problems(&whole_map("b/src/lib.rs", "a_tokio_tst"), &root);
    assert_eq!(renamed.len(), 17);
    assert_eq!(
        renamed[0],
        "R1: b/src/lib.rs::a_tokio_tst: no test `fn a_tokio_tst` in b/src/lib.rs"
    );
    let helper = problems(&whole_map("b/src/lib.rs", "a_helper"), &root);
    assert_eq!(helper.len(), 17, "{helper:?}");
    let missing_file = problems(&whole_map("b/src/gone.rs", "a_tokio_test"), &root);
    assert!(missing_file[0].starts_with("R1: b/src/gone.rs::a_tokio_test: cannot read"));
}

#[test]
fn a_missing_requirement_or_one_without_tests_is_named() {
    let root = repository("c/src/lib.rs", SOURCE);
    let map = whole_map("c/src/lib.rs", "a_tokio_test");
    let without_r6 = map.replace(
        "## R6. something\n\nTests: `c/src/lib.rs::a_tokio_test`",
        "## R6. something\n\nTests: none yet",
    );
    assert_eq!(
        problems(&without_r6, &root),
        ["R6 names no test that fails when it is broken"]
    );
    let no_r17 = map.replace("## R17.", "## Notes:");
    assert_eq!(
        problems(&no_r17, &root),
        ["R17 has no section (`## R17. ...`)"]
    );
    let twice = format!("{map}## R3. again\n");
    assert_eq!(problems(&twice, &root), ["R3 has two sections"]);
    let outside = map.replace("`c/src/lib.rs::", "`../c/src/lib.rs::");
    assert!(problems(&outside, &root)[0].contains("inside the repository"));
}

#[test]
fn headings_and_code_spans_are_read_strictly() {
    assert_eq!(requirement_heading("## R7. Review"), Some(7));
    assert_eq!(requirement_heading("## R12 Evidence"), Some(12));
    assert_eq!(requirement_heading("## Related"), None);
    assert_eq!(requirement_heading("## R7a"), None);
    assert_eq!(
        test_ref("operator/src/rules/scenario.rs::effective_expiry_is_the_earlier_end"),
        Some(TestRef {
            file: "operator/src/rules/scenario.rs".into(),
            name: "effective_expiry_is_the_earlier_end".into()
        })
    );
    assert_eq!(test_ref("cleanroom.io/changed-by"), None);
    assert_eq!(test_ref("a.rs::two words"), None);
}
