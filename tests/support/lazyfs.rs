//! A filesystem that loses power: an in-memory FUSE filesystem, after LazyFS (Jepsen / INESC
//! TEC), on which only what was synced survives a cut.
//!
//! Every write lands in memory at once. `fsync`/`fdatasync` of a file make its contents durable;
//! `fsync` of a directory makes its entries durable (a file created, renamed or removed is only
//! so once its directory was synced, as on a real disk). [`PowerFs::cut`] unmounts, throws away
//! everything that was not made durable, and mounts again: what a process finds after a reboot.
//! `sync_file_range` never reaches a FUSE filesystem, so it makes nothing durable here; neither
//! does a write-back by the page cache, which a FUSE filesystem without write-back caching
//! does not have.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};

/// Nothing is cached by the kernel: every lookup and attribute comes from the model.
const TTL: Duration = Duration::ZERO;

struct Node {
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    /// A file's contents as written, and as last synced.
    data: Vec<u8>,
    durable_data: Vec<u8>,
    /// A directory's entries as they are, and as last synced.
    entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
}

impl Node {
    fn new(kind: FileType, perm: u16, uid: u32, gid: u32) -> Node {
        Node {
            kind,
            perm,
            uid,
            gid,
            data: Vec::new(),
            durable_data: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// How many syncs reached the filesystem: the test checks that some did.
    syncs: u64,
    /// The disk is full: writes and new files fail with ENOSPC.
    full: bool,
}

impl Model {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.nodes.get(&ino)?;
        let size = match n.kind {
            FileType::Directory => 4096,
            _ => n.data.len() as u64,
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: n.kind,
            perm: n.perm,
            nlink: if n.kind == FileType::Directory { 2 } else { 1 },
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.nodes.get(&parent)?.entries.get(name).copied()
    }

    fn add(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<u64, Errno> {
        if self.full {
            return Err(Errno::ENOSPC);
        }
        match self.nodes.get(&parent) {
            Some(p) if p.kind == FileType::Directory => {}
            Some(_) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        }
        if self.child(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.nodes
            .get_mut(&parent)
            .expect("checked above")
            .entries
            .insert(name.to_os_string(), ino);
        Ok(ino)
    }

    /// The power cut: every node goes back to what was synced; what no synced directory
    /// names any more is gone.
    fn cut(&mut self) {
        for node in self.nodes.values_mut() {
            node.data = node.durable_data.clone();
            node.entries = node.durable_entries.clone();
        }
        let mut reachable = vec![1u64];
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = reachable.pop() {
            if seen.insert(ino) {
                if let Some(n) = self.nodes.get(&ino) {
                    reachable.extend(n.entries.values().copied());
                }
            }
        }
        self.nodes.retain(|ino, _| seen.contains(ino));
    }
}

#[derive(Clone)]
struct Fs {
    model: Arc<Mutex<Model>>,
}

impl Fs {
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sync that reached the filesystem: `make_durable` on the node, counted.
    fn sync(&self, ino: INodeNo, reply: ReplyEmpty, make_durable: impl FnOnce(&mut Node)) {
        let mut m = self.lock();
        m.syncs += 1;
        match m.nodes.get_mut(&ino.0) {
            Some(n) => {
                make_durable(n);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn create_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut m = self.lock();
        let node = Node::new(kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        let ino = m.add(parent.0, name, node)?;
        Ok(m.attr(ino).expect("just added"))
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let m = self.lock();
        match m.child(parent.0, name).and_then(|ino| m.attr(ino)) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.lock();
        let Some(n) = m.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(mode) = mode {
            n.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = uid {
            n.uid = uid;
        }
        if let Some(gid) = gid {
            n.gid = gid;
        }
        if let Some(size) = size {
            n.data.resize(size as usize, 0);
        }
        reply.attr(&TTL, &m.attr(ino.0).expect("present"));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & libc_s_ifmt::MASK {
            libc_s_ifmt::SOCK => FileType::Socket,
            libc_s_ifmt::FIFO => FileType::NamedPipe,
            libc_s_ifmt::REG => FileType::RegularFile,
            _ => return reply.error(Errno::EPERM),
        };
        match self.create_node(req, parent, name, kind, mode) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.create_node(req, parent, name, FileType::Directory, mode) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut m = self.lock();
        match m.nodes.get_mut(&parent.0).map(|p| p.entries.remove(name)) {
            Some(Some(_)) => reply.ok(),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut m = self.lock();
        let Some(ino) = m.child(parent.0, name) else {
            return reply.error(Errno::ENOENT);
        };
        if !m.nodes[&ino].entries.is_empty() {
            return reply.error(Errno::ENOTEMPTY);
        }
        m.nodes
            .get_mut(&parent.0)
            .expect("present")
            .entries
            .remove(name);
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut m = self.lock();
        if !m.nodes.contains_key(&newparent.0) {
            return reply.error(Errno::ENOENT);
        }
        let Some(ino) = m
            .nodes
            .get_mut(&parent.0)
            .and_then(|p| p.entries.remove(name))
        else {
            return reply.error(Errno::ENOENT);
        };
        m.nodes
            .get_mut(&newparent.0)
            .expect("checked above")
            .entries
            .insert(newname.to_os_string(), ino);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut m = self.lock();
        let Some(n) = m.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.0 & O_TRUNC != 0 {
            n.data.clear();
        }
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let m = self.lock();
        let Some(n) = m.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(n.data.len());
        let end = (start + size as usize).min(n.data.len());
        reply.data(&n.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut m = self.lock();
        let full = m.full;
        let Some(n) = m.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let end = offset as usize + data.len();
        // Full: no free block for any write (a log-structured store like sled writes into
        // fresh space; a sparse region it set aside is no free block either).
        if full {
            return reply.error(Errno::ENOSPC);
        }
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[offset as usize..end].copy_from_slice(data);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is not a sync.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fsync and fdatasync alike: the data (and size) become durable.
        self.sync(ino, reply, |n| n.durable_data = n.data.clone());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let m = self.lock();
        let Some(dir) = m.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, child) in &dir.entries {
            if let Some(n) = m.nodes.get(child) {
                all.push((*child, n.kind, name.clone()));
            }
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply, |n| n.durable_entries = n.entries.clone());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 20, 1 << 19, 1 << 19, 1 << 16, 1 << 15, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_node(req, parent, name, FileType::RegularFile, mode) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

const O_TRUNC: i32 = 0o1000;

/// The file-type bits of a mode (`S_IFMT` and friends), without a libc dependency.
mod libc_s_ifmt {
    pub const MASK: u32 = 0o170000;
    pub const SOCK: u32 = 0o140000;
    pub const REG: u32 = 0o100000;
    pub const FIFO: u32 = 0o010000;
}

/// A mounted [`Fs`] whose power can be cut.
pub struct PowerFs {
    mountpoint: PathBuf,
    fs: Fs,
    session: Option<BackgroundSession>,
}

impl PowerFs {
    /// Mounts an empty filesystem on `mountpoint` (an existing empty directory). Panics with
    /// what to do when FUSE is not available: this test must not pass without it.
    pub fn mount(mountpoint: &Path) -> PowerFs {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the power-cut test needs FUSE (run ./test, which installs fuse3)"
        );
        let meta = std::fs::metadata(mountpoint).unwrap();
        use std::os::unix::fs::MetadataExt;
        let mut model = Model {
            next_ino: 2,
            ..Model::default()
        };
        let root = Node::new(FileType::Directory, 0o755, meta.uid(), meta.gid());
        model.nodes.insert(1, root);
        let mut power = PowerFs {
            mountpoint: mountpoint.to_path_buf(),
            fs: Fs {
                model: Arc::new(Mutex::new(model)),
            },
            session: None,
        };
        power.start();
        power
    }

    fn start(&mut self) {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lifeboat-powercut".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(self.fs.clone(), &self.mountpoint, &config)
            .unwrap_or_else(|e| {
                panic!(
                    "mounting the power-cut filesystem on {}: {e} (needs /dev/fuse and fusermount3: run ./test)",
                    self.mountpoint.display()
                )
            });
        self.session = Some(session);
    }

    /// Cuts the power: unmounts (every process using it must be gone), forgets what was not
    /// synced, and mounts again.
    pub fn cut(&mut self) {
        if let Some(s) = self.session.take() {
            s.umount_and_join().expect("unmount after the cut");
        }
        self.fs.lock().cut();
        self.start();
    }

    /// Fills the disk (`true`: every write and every new file fail with ENOSPC), or frees it.
    pub fn set_full(&self, full: bool) {
        self.fs.lock().full = full;
    }

    /// How many `fsync`/`fdatasync` calls reached the filesystem so far.
    pub fn syncs(&self) -> u64 {
        self.fs.lock().syncs
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if s.umount_and_join().is_err() {
                // Still in use (a test failed with a process on it): detach it lazily rather
                // than leave a dead mount behind.
                let _ = std::process::Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.mountpoint)
                    .status();
            }
        }
    }
}
