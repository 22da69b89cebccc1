//! The embedding example in the README runs as written: `cargo test` builds
//! `examples/embed.rs`, and this runs the built program against the real
//! importer component and checks what it prints.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` puts examples beside the test binaries' `deps` folder.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("embed{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_embedding_example_imports_every_object_of_its_source() {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p assets-runtime` builds it",
        binary.display()
    );
    let mut command = Command::new(&binary);
    // `make test` names the component it built; the example's default is the same file.
    if let Some(component) = std::env::var_os("ASSETS_COMPONENT") {
        command.arg(component);
    }
    let output = command.output().expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the example failed:\n{stdout}\n{stderr}");
    // Three pages of two servers: six objects sent, six received.
    assert!(
        stdout.contains("completed execution e1: 6 objects in 1 chunks; the stand-in received 6 objects"),
        "{stdout}"
    );
}
