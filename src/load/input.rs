//! Reading an input file (compose file, env file) safely: only regular files, and at most
//! [`MAX_INPUT_BYTES`] of them.
//!
//! Without these checks `-f /dev/zero` grows memory until the machine gives out, and `-f` on a
//! FIFO blocks forever; the agent loads unattended, so either would hang a host's convergence.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest input file read: 10 MiB. Real compose files are kilobytes (a 100-service stack
/// is well under 1 MiB), so this leaves a wide margin, while parsing 10 MiB of YAML into a
/// generic value (roughly ten times its size in memory) still fits a small host.
pub const MAX_INPUT_BYTES: u64 = 10 * 1024 * 1024;

/// Reads `path` as UTF-8 text, refusing anything but a regular file and anything larger than
/// [`MAX_INPUT_BYTES`]. The file is opened non-blocking and its type checked on the open
/// handle, so a FIFO is refused instead of waited on and nothing can swap the file in between.
pub(crate) fn read_limited(path: &Path) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            io::ErrorKind::IsADirectory
        } else {
            io::ErrorKind::InvalidInput
        };
        return Err(io::Error::new(
            kind,
            format!(
                "not a regular file (it is {}); give the path of a file",
                kind_of(&meta.file_type())
            ),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    read_at_most(file, meta.len())
}

/// Reads the file, failing once it grows past the cap (it may grow after the size check);
/// `size` (what the file held when checked) sizes the buffer, so it is read in one call.
fn read_at_most(file: File, size: u64) -> io::Result<String> {
    let mut buf = String::with_capacity(size as usize + 1);
    file.take(MAX_INPUT_BYTES + 1).read_to_string(&mut buf)?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    Ok(buf)
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "larger than {} MiB, the most composeops reads from one input file; \
             split it into several files",
            MAX_INPUT_BYTES / (1024 * 1024)
        ),
    )
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_directories() {
        let e = read_limited(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read_limited(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_limited(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn refuses_a_file_over_the_cap_and_reads_one_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_INPUT_BYTES as usize + 1]).unwrap();
        let e = read_limited(&big).unwrap_err();
        assert!(e.to_string().contains("larger than 10 MiB"), "{e}");
        std::fs::write(&big, vec![b'#'; MAX_INPUT_BYTES as usize]).unwrap();
        assert_eq!(read_limited(&big).unwrap().len() as u64, MAX_INPUT_BYTES);
    }
}
