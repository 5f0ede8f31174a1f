//! The documentation's examples are written as a project that depends on
//! `strata` alone writes them: no `strata_core::`, `strata_redis::` or
//! `strata_admin::` path in any example (README, guides, rustdoc, the
//! examples), and every guide with Rust examples is compiled as doctests of
//! the `strata` crate (`src/lib.rs` includes it).

use std::fs;
use std::path::{Path, PathBuf};

/// The paths a user of the `strata` crate cannot write (E0433).
const INNER_PATHS: [&str; 3] = ["strata_core::", "strata_redis::", "strata_admin::"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// The lines inside fenced code blocks of `text`, with their line numbers.
/// In a Rust file only doc comments (`///`, `//!`) are read.
fn code_lines(text: &str, rust: bool) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut inside = false;
    for (number, line) in text.lines().enumerate() {
        let body = if rust {
            let trimmed = line.trim_start();
            match trimmed
                .strip_prefix("///")
                .or_else(|| trimmed.strip_prefix("//!"))
            {
                Some(doc) => doc.strip_prefix(' ').unwrap_or(doc),
                None => {
                    inside = false;
                    continue;
                }
            }
        } else {
            line
        };
        if body.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            lines.push((number + 1, body.to_owned()));
        }
    }
    lines
}

fn inner_paths_in(lines: &[(usize, String)], file: &Path, found: &mut Vec<String>) {
    for (number, line) in lines {
        if INNER_PATHS.iter().any(|path| line.contains(path)) {
            found.push(format!("{}:{number}: {}", file.display(), line.trim()));
        }
    }
}

#[test]
fn no_example_names_an_inner_crate() {
    let root = root();
    let mut found = Vec::new();

    let mut markdown = vec![root.join("README.md")];
    for entry in fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            markdown.push(path);
        }
    }
    for file in &markdown {
        let text = fs::read_to_string(file).unwrap();
        inner_paths_in(&code_lines(&text, false), file, &mut found);
    }

    let mut sources = Vec::new();
    for dir in [
        "src",
        "crates/strata-core/src",
        "crates/strata-redis/src",
        "crates/strata-admin/src",
    ] {
        rust_files(&root.join(dir), &mut sources);
    }
    for file in &sources {
        let text = fs::read_to_string(file).unwrap();
        inner_paths_in(&code_lines(&text, true), file, &mut found);
    }

    // The examples are read whole: they are what users copy.
    let mut examples = Vec::new();
    rust_files(&root.join("examples"), &mut examples);
    for file in &examples {
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<_> = text
            .lines()
            .enumerate()
            .map(|(number, line)| (number + 1, line.to_owned()))
            .collect();
        inner_paths_in(&lines, file, &mut found);
    }

    assert!(
        sources.len() > 50 && markdown.len() > 3 && examples.len() > 3,
        "the walk found too little: {} sources, {} guides, {} examples",
        sources.len(),
        markdown.len(),
        examples.len()
    );
    assert!(
        found.is_empty(),
        "examples must use `strata::` paths (`strata::redis::`, `strata::admin::`):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_guide_with_rust_examples_is_a_doctest_of_the_strata_crate() {
    let root = root();
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(lib.contains(r#"#![doc = include_str!("../README.md")]"#));
    let mut guides = 0;
    for entry in fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        if !text.lines().any(|line| line.starts_with("```rust")) {
            continue;
        }
        guides += 1;
        let name = path.file_name().unwrap().to_str().unwrap();
        let include = format!(r#"include_str!("../docs/{name}")"#);
        assert!(
            lib.contains(&include),
            "docs/{name} has Rust examples: include it in src/lib.rs's `guides` module so they are compiled"
        );
    }
    assert!(guides >= 2, "found {guides} guides with Rust examples");
}
