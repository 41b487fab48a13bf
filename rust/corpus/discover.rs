//! Which files a corpus is: files, directories (recursive, sorted) and glob patterns expanded into
//! one ordered list, each file once.
//!
//! Links are followed, each place once: a directory already walked (through a link to itself or to
//! an ancestor, or through a second link) is not walked again, and a file reached under several
//! names (links, hard links, a directory and a glob, or named twice) is read once, at its first
//! place in the order. "The same" means the same device and inode. Directory walks and globs share
//! the walker, so `**` patterns follow the same rule (the `glob` crate's own walk would recurse
//! through a link to its own directory until the kernel's 40-link limit, or, with two such links,
//! practically forever). Only regular files are read: a FIFO, device or socket is refused by name
//! (opening a FIFO without a writer blocks forever; `/dev/zero` never ends), and so is a link whose
//! target is gone (the file the corpus was meant to hold is missing: an error, not a silent skip).

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use super::{wanted_in_dir, CorpusFile};
use crate::error::{Error, Result};

/// What makes two paths one file or directory.
#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = PathBuf;

#[cfg(unix)]
fn file_id(_path: &Path, meta: &Metadata) -> Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path, _meta: &Metadata) -> Result<FileId> {
    std::fs::canonicalize(path).map_err(|e| Error::io(path, e))
}

/// Metadata of what `path` names, links followed.
fn metadata(path: &Path) -> Result<Metadata> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))
}

/// The error for a corpus path that is not a regular file (nor a directory).
fn not_a_regular_file(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "{} is not a regular file (a FIFO, device or socket): distilx reads corpus files it can seek and that end; \
         write the data to a file first",
        path.display()))
}

/// The corpus files found so far, each once.
#[derive(Default)]
struct Found {
    files: Vec<PathBuf>,
    ids: HashSet<FileId>,
}

impl Found {
    /// Add `path` unless the same file is already listed; refuse what is not a regular file, and a
    /// link whose target is gone (named as such: a corpus file that is missing is not skipped silently).
    fn add(&mut self, path: PathBuf) -> Result<()> {
        let meta = metadata(&path).map_err(|e| match (&e, std::fs::read_link(&path)) {
            (Error::NotFound(_), Ok(target)) => Error::InvalidInput(format!(
                "{} is a symbolic link to {}, which does not exist: fix or remove the link (a corpus file that is \
                 missing is an error, not skipped)",
                path.display(),
                target.display())),
            _ => e,
        })?;
        if !meta.is_file() {
            return Err(not_a_regular_file(&path));
        }
        if self.ids.insert(file_id(&path, &meta)?) {
            self.files.push(path);
        }
        Ok(())
    }
}

/// A directory walk: what it visits and how deep.
struct Walk<'a> {
    /// Directories entered so far (each once: this breaks link cycles).
    dirs: HashSet<FileId>,
    /// Levels below the start a file may lie at (None: any).
    max_depth: Option<usize>,
    /// Whether a file (given its path relative to the start, '/'-separated) is wanted.
    wanted: &'a dyn Fn(&Path, &str) -> bool,
}

impl Walk<'_> {
    /// Visit `dir` (`rel`: its path below the start) if not seen before, handing each wanted file
    /// to `out` in sorted order (subdirectories in place).
    fn dir(&mut self, dir: &Path, rel: &str, depth: usize, out: &mut dyn FnMut(PathBuf) -> Result<()>) -> Result<()> {
        let read_from = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if !self.dirs.insert(file_id(read_from, &metadata(read_from)?)?) {
            return Ok(());
        }
        let mut entries: Vec<(PathBuf, String)> = std::fs::read_dir(read_from)
            .map_err(|e| Error::io(read_from, e))?
            .filter_map(|e| e.ok())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                (dir.join(e.file_name()), rel)
            })
            .collect();
        entries.sort();
        for (path, rel) in entries {
            // A broken link is neither: it is handed on when wanted, and fails with its name.
            let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir {
                if self.max_depth.is_none_or(|max| depth + 1 < max) {
                    self.dir(&path, &rel, depth + 1, out)?;
                }
            } else if (self.wanted)(&path, &rel) {
                out(path)?;
            }
        }
        Ok(())
    }
}

/// A glob pattern split into the directory to walk (its leading components without wildcards)
/// and the pattern the rest of a path must match.
fn split_glob(input: &str) -> (PathBuf, String) {
    let parts: Vec<&str> = input.split('/').collect();
    let literal = parts.iter().take_while(|p| !p.contains(['*', '?', '['])).count().min(parts.len() - 1);
    let base = match parts[..literal].join("/") {
        root if root.is_empty() && input.starts_with('/') => "/".to_string(),
        base => base,
    };
    (PathBuf::from(base), parts[literal..].join("/"))
}

/// The files `pattern` matches, sorted, found with the corpus walker (links followed once).
fn glob_files(input: &str) -> Result<Vec<PathBuf>> {
    let (base, rest) = split_glob(input);
    let pattern = glob::Pattern::new(&rest).map_err(|e| Error::InvalidInput(format!("bad glob pattern {input:?}: {e}")))?;
    let options = glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };
    let wanted = |_: &Path, rel: &str| pattern.matches_with(rel, options);
    let max_depth = (!rest.contains("**")).then(|| rest.split('/').count());
    let mut found = Vec::new();
    let base_exists = if base.as_os_str().is_empty() { true } else { base.is_dir() };
    if base_exists {
        let mut walk = Walk { dirs: HashSet::new(), max_depth, wanted: &wanted };
        walk.dir(&base, "", 0, &mut |p| {
            found.push(p);
            Ok(())
        })?;
    }
    found.sort();
    Ok(found)
}

/// Expand files, directories (recursively, sorted, known extensions) and glob patterns into the
/// ordered list of corpus files, each file once. Every file is opened once here so a missing,
/// unreadable or non-regular path fails now, with its name, rather than mid-epoch.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<CorpusFile>> {
    if inputs.is_empty() {
        return Err(Error::InvalidInput("no input files were given (pass a file, a directory or a glob)".into()));
    }
    let mut found = Found::default();
    for input in inputs {
        let p = Path::new(input);
        if p.exists() {
            if p.is_dir() {
                let mut matched = 0;
                let wanted = |path: &Path, _: &str| wanted_in_dir(path);
                let mut walk = Walk { dirs: HashSet::new(), max_depth: None, wanted: &wanted };
                walk.dir(p, "", 0, &mut |f| {
                    matched += 1;
                    found.add(f)
                })?;
                if matched == 0 {
                    return Err(Error::InvalidInput(format!(
                        "directory {input} holds no .txt/.jsonl (optionally .gz/.zst), .parquet or .arrow files; pass the files explicitly")));
                }
            } else {
                found.add(p.to_path_buf())?;
            }
        } else if input.contains(['*', '?', '[']) {
            let matched = glob_files(input)?;
            if matched.is_empty() {
                return Err(Error::NotFound(PathBuf::from(input)));
            }
            for f in matched {
                found.add(f)?;
            }
        } else {
            return Err(Error::NotFound(p.to_path_buf()));
        }
    }
    for p in &found.files {
        File::open(p).map_err(|e| Error::io(p, e))?;
    }
    Ok(found.files.into_iter().map(CorpusFile::from_path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::tmpdir;

    fn names(files: &[CorpusFile], root: &Path) -> Vec<String> {
        files.iter().map(|f| f.path.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
    }

    fn expand(inputs: &[PathBuf]) -> Result<Vec<CorpusFile>> {
        expand_inputs(&inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn globs_match_like_the_glob_crate_without_links() {
        let d = tmpdir("discover-glob");
        for f in ["a.txt", "b.jsonl", ".hidden.txt", "sub/c.txt", "sub/deeper/d.txt", "sub/e.md", "other/f.txt"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "x\n").unwrap();
        }
        for pattern in ["*.txt", "*", "**/*.txt", "sub/**/*", "*/*.txt", "s?b/[cd].txt", "sub/*/d.txt", "**/deeper/*"] {
            let full = format!("{}/{pattern}", d.display());
            let mut want: Vec<PathBuf> = glob::glob(&full).unwrap().filter_map(|r| r.ok()).filter(|p| p.is_file()).collect();
            want.sort();
            assert_eq!(glob_files(&full).unwrap(), want, "{pattern}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_are_followed_once_and_each_file_is_read_once() {
        use std::os::unix::fs::symlink;
        let d = tmpdir("discover-links");
        let corpus = d.join("corpus");
        std::fs::create_dir_all(corpus.join("sub")).unwrap();
        std::fs::write(corpus.join("a.txt"), "a\n").unwrap();
        std::fs::write(corpus.join("sub/b.txt"), "b\n").unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/c.txt"), "c\n").unwrap();
        // Two links to the directory itself, one to its parent, one to a directory outside (followed),
        // one to a file already listed, a hard link to it, and a link to a file outside (followed).
        symlink(".", corpus.join("self")).unwrap();
        symlink("..", corpus.join("sub/up")).unwrap();
        symlink(corpus.join("."), corpus.join("sub/self2")).unwrap();
        symlink(d.join("outside"), corpus.join("z-outside")).unwrap();
        symlink(corpus.join("a.txt"), corpus.join("sub/link-to-a.txt")).unwrap();
        std::fs::hard_link(corpus.join("a.txt"), corpus.join("sub/hard-a.txt")).unwrap();
        symlink(d.join("outside/c.txt"), corpus.join("sub/c-link.txt")).unwrap();
        let listed = expand(std::slice::from_ref(&corpus)).unwrap();
        assert_eq!(names(&listed, &corpus), ["a.txt", "sub/b.txt", "sub/c-link.txt"]);
        // The same rule for `**` globs, and across inputs: a file named again is not read twice.
        let globbed = expand(&[corpus.join("**/*.txt"), corpus.join("a.txt"), corpus.join("sub/hard-a.txt")]).unwrap();
        assert_eq!(names(&globbed, &corpus), ["a.txt", "sub/b.txt", "sub/c-link.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_is_named_with_its_target() {
        let d = tmpdir("discover-dangling");
        std::fs::write(d.join("a.txt"), "a\n").unwrap();
        std::os::unix::fs::symlink(d.join("moved-away.txt"), d.join("b.txt")).unwrap();
        let err = expand(std::slice::from_ref(&d)).expect_err("refused").to_string();
        assert!(err.contains("b.txt is a symbolic link to") && err.contains("moved-away.txt, which does not exist"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn non_regular_files_are_refused_by_name() {
        let d = tmpdir("discover-fifo");
        let fifo = d.join("pipe.txt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        let mut cases = vec![(PathBuf::from("/dev/zero"), PathBuf::from("/dev/zero"))];
        if made {
            // Named, or found in a directory: refused before anything opens it (which would block).
            cases.extend([(fifo.clone(), fifo.clone()), (d.clone(), fifo.clone())]);
        }
        for (input, named) in cases {
            let err = expand(&[input]).expect_err("refused").to_string();
            assert!(err.contains("not a regular file") && err.contains(&named.display().to_string()), "{err}");
        }
    }
}
