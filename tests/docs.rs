#![cfg(not(target_arch = "wasm32"))]
//! The documents that cite tests cite tests that exist: every test name in the "shown by"
//! column of `docs/security.md` is a function in the tree (or a row of an `on_both_hosts!`
//! table; a configuration key or emulator mode cited there is a string in the code), so a test
//! renamed or removed cannot leave the threat table pointing at nothing.
//!
//! Run with `cargo test --test docs`.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The names of every function in the code and tests, of every row of a both-hosts table, and
/// every snake_case string literal (configuration keys, emulator modes).
fn defined_names(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    // The demo app's verifier is cited too: it is how an application checks the assertion.
    for dir in ["src", "tests", "envoy/src", "nginx-unit/src", "cli/src", "cli/tests", "examples/legacy-app/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut names = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        // Quoted names are configuration keys and emulator modes, which the table cites too.
        for quoted in text.split('"').skip(1).step_by(2) {
            if quoted.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                names.push(quoted.to_string());
            }
        }
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.split_once("fn ").filter(|(before, _)| before.is_empty() || before.ends_with(' '))
            {
                names.push(rest.1.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
            } else if let Some(row) = line.strip_suffix(',') {
                if row.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                    names.push(row.to_string());
                }
            }
        }
    }
    names
}

/// The backticked names in the third column of the table's rows that read as test names:
/// `module::tests::name`, or a bare snake_case name of at least three words.
fn cited_tests(doc: &str) -> Vec<String> {
    let mut cited = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| ")) {
        let Some(shown_by) = row.split(" | ").nth(2) else { continue };
        for (i, quoted) in shown_by.split('`').enumerate() {
            let is_name = quoted.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
            let test = quoted.rsplit("::").next().unwrap_or(quoted);
            if i % 2 == 1 && is_name && test.matches('_').count() >= 2 {
                cited.push(test.to_string());
            }
        }
    }
    cited
}

#[test]
fn every_test_docs_security_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md is readable");
    let cited = cited_tests(&doc);
    assert!(cited.len() > 30, "the threat table cites only {} tests: {cited:?}", cited.len());
    let names = defined_names(root);
    let missing: Vec<&String> = cited.iter().filter(|c| !names.contains(c)).collect();
    assert!(missing.is_empty(), "docs/security.md cites tests that do not exist: {missing:?}");
}

/// The commits a results file says it measured: backticked hex of 7 to 40 digits on a line
/// that speaks of a commit.
fn measured_commits(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.to_ascii_lowercase().contains("commit"))
        .flat_map(|l| l.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|q| (7..=40).contains(&q.len()) && q.chars().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

/// Every recorded result names the commit it measured, that commit is in this repository's
/// history, and the tree it measured had no uncommitted changes.
#[test]
fn every_recorded_result_names_a_commit_of_this_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join(".git").exists() {
        eprintln!("not a git checkout: the commits the results name cannot be looked up");
        return;
    }
    for file in ["benches/RESULTS.md", "tests/soak/RESULTS.md", "fuzz/RESULTS.md"] {
        let text = fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        let commits = measured_commits(&text);
        assert!(!commits.is_empty(), "{file} names no commit it measured");
        for commit in &commits {
            let found = std::process::Command::new("git")
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .current_dir(root)
                .status()
                .unwrap_or_else(|e| panic!("cannot run git: {e}"));
            assert!(found.success(), "{file} names commit {commit}, which is not in this repository");
        }
        let lower = text.to_ascii_lowercase();
        for mark in ["with uncommitted changes", "plus working-tree changes", "tree not clean"] {
            assert!(!lower.contains(mark), "{file} measured a tree with changes ({mark:?})");
        }
    }
}
