//! The writer's refusals, each on a temporary folder with a victim file
//! outside it that must stay byte-identical.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;

struct Scene {
    _t: tempfile::TempDir,
    out: std::path::PathBuf,
    victim: std::path::PathBuf,
}

fn scene() -> Scene {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
    Scene { _t: t, out, victim }
}

impl Scene {
    fn untouched(&self) {
        assert_eq!(std::fs::read(&self.victim).unwrap(), b"precious");
        let elsewhere = self.victim.with_file_name("elsewhere");
        assert_eq!(std::fs::read_dir(elsewhere).unwrap().count(), 0);
    }
}

#[test]
fn files_are_written_new_then_replaced_and_announced() {
    let s = scene();
    let mut d = OutDir::create(&s.out).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    d.on_replace(Some(OnReplace::new(move |p: &Path| {
        seen2.lock().unwrap().push(p.to_path_buf())
    })));
    assert_eq!(d.write("a/b/c.txt", b"1").unwrap(), Prior::New);
    assert_eq!(d.write("a/b/c.txt", b"22").unwrap(), Prior::Replaced);
    assert_eq!(std::fs::read(s.out.join("a/b/c.txt")).unwrap(), b"22");
    assert_eq!(*seen.lock().unwrap(), vec![s.out.join("a/b/c.txt")]);
    assert_eq!(d.existing("a/b/c.txt").unwrap(), Some(2));
    assert_eq!(d.existing("a/x/y").unwrap(), None);
    // No temporary file is left behind.
    let names: Vec<String> = d.files().unwrap().into_iter().map(|f| f.0).collect();
    assert_eq!(names, vec!["a/b/c.txt".to_string()]);
}

#[test]
fn a_link_to_a_folder_outside_is_never_written_through() {
    let s = scene();
    symlink("../elsewhere", s.out.join("data")).unwrap();
    let d = OutDir::create(&s.out).unwrap();
    let e = d.write("data/m_temp01.csv", b"x").unwrap_err().to_string();
    assert!(
        e.contains("data") && e.contains("symbolic link") && e.contains("not a folder"),
        "{e}"
    );
    s.untouched();
}

#[test]
fn a_link_in_place_of_a_file_is_refused_and_a_planted_temporary_name_ignored() {
    let s = scene();
    symlink(&s.victim, s.out.join("report.html")).unwrap();
    let d = OutDir::create(&s.out).unwrap();
    let e = d.write("report.html", b"x").unwrap_err().to_string();
    assert!(
        e.contains("report.html") && e.contains("symbolic link"),
        "{e}"
    );
    // The temporary names of both the old writers are planted links: the
    // writer creates its own exclusively and never opens them.
    for name in [
        "f.csv.moralsweep-part",
        "f.csv.tmp",
        ".f.csv.1-0.moralsweep-part",
    ] {
        symlink(&s.victim, s.out.join(name)).unwrap();
    }
    d.write("f.csv", b"data").unwrap();
    assert_eq!(std::fs::read(s.out.join("f.csv")).unwrap(), b"data");
    s.untouched();
}

#[test]
fn fifos_folders_and_devices_are_never_replaced() {
    let s = scene();
    assert!(std::process::Command::new("mkfifo")
        .arg(s.out.join("pipe"))
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(s.out.join("dir")).unwrap();
    let d = OutDir::create(&s.out).unwrap();
    let e = d.write("pipe", b"x").unwrap_err().to_string();
    assert!(e.contains("FIFO"), "{e}");
    let e = d.write("dir", b"x").unwrap_err().to_string();
    assert!(e.contains("a folder, not a regular file"), "{e}");
    let dev = OutDir::open(Path::new("/dev")).unwrap().unwrap();
    let e = dev.existing("null").unwrap_err().to_string();
    assert!(e.contains("character device"), "{e}");
    let e = format!("{}", OutDir::create(&s.victim).unwrap_err());
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn a_link_to_a_folder_is_a_folder_when_the_user_names_it() {
    let s = scene();
    let real = s.victim.with_file_name("elsewhere");
    let link = s.victim.with_file_name("out-link");
    symlink(&real, &link).unwrap();
    let d = OutDir::create(&link).unwrap();
    d.write("x", b"1").unwrap();
    assert_eq!(std::fs::read(real.join("x")).unwrap(), b"1");
}

#[test]
fn an_abandoned_file_leaves_nothing_and_links_are_removed_not_followed() {
    let s = scene();
    let d = OutDir::create(&s.out).unwrap();
    {
        let mut f = d.create_file("half.csv").unwrap();
        f.write_all(b"half").unwrap();
    }
    assert!(d.files().unwrap().is_empty());
    symlink(&s.victim, s.out.join("l")).unwrap();
    assert_eq!(d.files().unwrap(), vec![("l".to_string(), Kind::Link)]);
    assert!(d.remove_file("l").unwrap());
    assert!(!d.remove_file("l").unwrap());
    assert!(matches!(d.write("../x", b"1"), Err(WriteError::BadName(_))));
    s.untouched();
}
