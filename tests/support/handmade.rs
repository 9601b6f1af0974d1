//! Repositories written by hand, byte by byte after
//! `docs/repository-format.md` (format 3, no data filters), for tests of
//! what obnam does with damaged and hostile data that its own writer
//! would never make: trees that lie about their ids, names that are not
//! file names, chains of folders deeper than the format allows.
//!
//! This is a second, independent writer of the format: if the
//! documentation and the code drift apart, these tests say so.

use std::fs;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A chunk or tree id: 32 bytes of token (variant 0).
pub type Id = [u8; 32];

/// SHA-256 of some bytes: the token of a plain repository.
pub fn token(data: &[u8]) -> Id {
    Sha256::digest(data).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One tree entry, with the fields `docs/repository-format.md` lists.
#[derive(Serialize, Clone)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub ctime: i64,
    pub ctime_ns: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    #[serde(with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub checksum: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtree: Option<serde_bytes::ByteBuf>,
}

impl Entry {
    fn base(name: &[u8], kind: &'static str, mode: u32) -> Self {
        Entry {
            name: name.to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            ctime: 1_700_000_000,
            ctime_ns: 0,
            nlink: 1,
            dev: 1,
            ino: 0,
            checksum: Vec::new(),
            chunks: Vec::new(),
            subtree: None,
        }
    }

    /// A folder whose tree is `subtree`.
    pub fn dir(name: &[u8], subtree: Id) -> Self {
        let mut e = Entry::base(name, "dir", 0o40755);
        e.subtree = Some(serde_bytes::ByteBuf::from(subtree.to_vec()));
        e
    }

    /// A regular file of one chunk.
    pub fn file(name: &[u8], chunk: Id, content: &[u8]) -> Self {
        let mut e = Entry::base(name, "file", 0o100644);
        e.size = content.len() as u64;
        e.checksum = token(content).to_vec();
        e.chunks = vec![serde_bytes::ByteBuf::from(chunk.to_vec())];
        e
    }
}

#[derive(Serialize)]
struct Tree<'a> {
    entries: &'a [Entry],
}

/// Encode a tree object (entries sorted by name, as the format says).
pub fn encode_tree(entries: &[Entry]) -> Vec<u8> {
    let mut entries = entries.to_vec();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    rmp_serde::to_vec_named(&Tree { entries: &entries }).expect("encode a tree")
}

/// The plain bytes of an object with its checksum, bound to its name.
fn checksummed(context: &str, mut plain: Vec<u8>) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"obnam object checksum\0");
    h.update(context.as_bytes());
    h.update(b"\0");
    h.update(&plain);
    plain.extend_from_slice(&h.finalize());
    plain
}

/// A stored object without filters: an empty filter header, then the bytes.
fn unfiltered(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&bytes);
    out
}

/// The id of client `name` in a repository of format 3 or earlier
/// without a seal (`clients/CLIENTID`, `generations/CLIENTID/`).
pub fn client_id(name: &str) -> String {
    hex(&token(format!("obnam-client\0{name}").as_bytes())[..16])
}

/// Write a JSON record under `key` in the repository in `folder` (format
/// 3, no data filters), its checksum bound to `key`: whole, whatever it
/// says.
pub fn write_record(folder: &Path, key: &str, record: &serde_json::Value) {
    let path = folder.join(key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let plain = serde_json::to_vec(record).unwrap();
    fs::write(path, unfiltered(checksummed(key, plain))).unwrap();
}

/// A repository being written by hand.
#[derive(Default)]
pub struct Handmade {
    /// Blobs to store: id, kind (0 data, 1 tree), plain bytes.
    blobs: Vec<(Id, u8, Vec<u8>)>,
}

impl Handmade {
    /// Store a file chunk; returns its id.
    pub fn chunk(&mut self, data: &[u8]) -> Id {
        let id = token(data);
        self.blobs.push((id, 0, data.to_vec()));
        id
    }

    /// Store a tree under its true id; returns the id.
    pub fn tree(&mut self, entries: &[Entry]) -> Id {
        let bytes = encode_tree(entries);
        let id = token(&bytes);
        if !self.blobs.iter().any(|(b, _, _)| *b == id) {
            self.blobs.push((id, 1, bytes));
        }
        id
    }

    /// Store a tree under an id of the caller's choosing (a lie).
    pub fn tree_as(&mut self, id: Id, entries: &[Entry]) {
        self.blobs.push((id, 1, encode_tree(entries)));
    }

    /// Write the repository into `folder`, with one generation of
    /// `client` whose root tree is `root`; returns the generation's id.
    pub fn write(&self, folder: &Path, client: &str, root: Id) -> String {
        let config = serde_json::json!({
            "format": "obnam-repository", "version": 3,
            "id": "00112233445566778899aabbccddeeff",
            "created": "2026-12-01T00:00:00Z",
        });
        fs::create_dir_all(folder).unwrap();
        fs::write(folder.join("config"), serde_json::to_vec(&config).unwrap()).unwrap();
        // One pack per kind, as the format requires.
        let mut index_packs: Vec<[u8; 16]> = Vec::new();
        let mut index_entries = Vec::new();
        for kind in [0u8, 1] {
            let blobs: Vec<_> = self.blobs.iter().filter(|(_, k, _)| *k == kind).collect();
            if blobs.is_empty() {
                continue;
            }
            let pack_id: [u8; 16] = token(format!("pack {kind}").as_bytes())[..16]
                .try_into()
                .unwrap();
            let mut pack = b"OBNAMPK1".to_vec();
            let mut trailer = (blobs.len() as u32).to_le_bytes().to_vec();
            for (id, kind, plain) in blobs {
                let offset = pack.len() as u32;
                let stored = unfiltered(plain.clone());
                pack.extend_from_slice(&stored);
                let mut entry = id.to_vec();
                entry.extend_from_slice(&0u64.to_le_bytes());
                let place = [offset.to_le_bytes(), (stored.len() as u32).to_le_bytes()].concat();
                trailer.extend_from_slice(&entry);
                trailer.extend_from_slice(&place);
                trailer.push(*kind);
                index_entries.push((entry, index_packs.len() as u32, place, *kind));
            }
            let trailer = unfiltered(checksummed(&format!("pack/{}", hex(&pack_id)), trailer));
            pack.extend_from_slice(&trailer);
            pack.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
            pack.extend_from_slice(b"OBPK");
            let hex_id = hex(&pack_id);
            let dir = folder.join("packs").join(&hex_id[..2]);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(&hex_id), pack).unwrap();
            index_packs.push(pack_id);
        }
        let mut index = b"OBNAMIX1".to_vec();
        index.extend_from_slice(&(index_packs.len() as u32).to_le_bytes());
        for p in &index_packs {
            index.extend_from_slice(p);
        }
        index.extend_from_slice(&(index_entries.len() as u32).to_le_bytes());
        for (entry, pack, place, kind) in &index_entries {
            index.extend_from_slice(entry);
            index.extend_from_slice(&pack.to_le_bytes());
            index.extend_from_slice(place);
            index.push(*kind);
        }
        let index_id = hex(&token(b"index")[..16]);
        let key = format!("index/{index_id}");
        fs::create_dir_all(folder.join("index")).unwrap();
        fs::write(folder.join(&key), unfiltered(checksummed(&key, index))).unwrap();

        let client_id = client_id(client);
        let key = format!("clients/{client_id}");
        write_record(
            folder,
            &key,
            &serde_json::json!({"name": client, "created": 1}),
        );

        let gen_id = "0123456789abcdef".to_string();
        let key = format!("generations/{client_id}/{gen_id}");
        write_record(folder, &key, &generation_record(&gen_id, client, root));
        gen_id
    }
}

/// The record of generation `id` of `client`, whose root tree is `root`.
pub fn generation_record(id: &str, client: &str, root: Id) -> serde_json::Value {
    serde_json::json!({
        "id": id, "client": client, "started": 1_700_000_000_000_000_000i64,
        "ended": 1_700_000_000_000_000_001i64, "file_count": 1, "data_size": 1,
        "is_checkpoint": false, "root": root.to_vec(),
    })
}
