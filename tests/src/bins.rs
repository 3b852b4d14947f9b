//! Finding the workspace's binaries at run time.
//!
//! `env!("CARGO_BIN_EXE_x")` only exists for binaries of the test's own package, so the
//! harness looks next to the test executable: it lives in `target/<profile>/deps/`, the
//! binaries one level up. `POSTERN_BIN_DIR` overrides the directory.

use std::path::{Path, PathBuf};

/// What to do when a binary is missing; part of every "not found" message.
pub const BUILD_HINT: &str = "run `cargo build --workspace --bins` first";

/// The directory holding the workspace binaries: `POSTERN_BIN_DIR`, or the cargo profile
/// directory the running test executable was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POSTERN_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let dir = exe
        .parent()
        .expect("the test executable lives in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// The path of binary `name` in `dir`, or an error message that says how to build it.
pub fn find_bin(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "binary `{name}` not found at {}: {BUILD_HINT}",
            path.display()
        ))
    }
}

/// The path of workspace binary `name`; panics with [`BUILD_HINT`] when it is not built.
pub fn bin(name: &str) -> PathBuf {
    find_bin(&bin_dir(), name).unwrap_or_else(|e| panic!("{e}"))
}
