//! Parsing `/proc/self/mountinfo`: the cgroup mounts (for `layout` and `tuning`) and the mounts
//! below a directory (for the helper's mount table). Text in, values out; no I/O here.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct MountEntry {
    pub(super) root: PathBuf,
    pub(super) mount_point: PathBuf,
    pub(super) fstype: String,
    pub(super) super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                root: PathBuf::from(unescape_mountinfo(fields.get(3)?)),
                mount_point: PathBuf::from(unescape_mountinfo(fields.get(4)?)),
                fstype: (*fields.get(sep + 1)?).to_string(),
                super_options: (*fields.get(sep + 3)?).to_string(),
            })
        })
        .collect()
}

/// Mount points (in order) of every mount whose mount point is `dir` or below it.
pub(crate) fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        let mi = "1 0 0:1 / /tmp/x\\040y rw - tmpfs tmpfs rw\n2 0 0:1 / /usr rw - ext4 x rw\n";
        assert_eq!(
            mounts_under(mi, Path::new("/tmp")),
            vec![PathBuf::from("/tmp/x y")]
        );
    }
}
