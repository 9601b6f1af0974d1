//! A sanity check of a shared library before it is handed to the system loader.
//!
//! `dlopen` trusts the file: a truncated or corrupt library makes it read
//! past the end of a mapping and the process dies of SIGBUS, which no Rust
//! code can catch. So before loading, the file is parsed as ELF and every
//! part the loader maps (program headers, loadable segments, section
//! headers) must lie inside the file.

use std::fs::File;

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::Endianness;

/// Why a file is not a loadable library.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a shared library (no ELF header)")]
    NotElf,
    #[error("not a 64-bit ELF shared library")]
    WrongClass,
    #[error("corrupt or truncated shared library: {0}")]
    Corrupt(String),
}

/// Check that the open `file` is a complete 64-bit ELF shared object,
/// and say whether it exports `entry` (the plugin entry point's symbol):
/// `Some(false)` where its table of dynamic symbols lacks it, `None`
/// where there is no such table to look in (its section headers were
/// stripped, which the system loader does not need: only loading it
/// tells). The caller loads this same open file, so what is checked is
/// what is loaded; a library that does not export the entry point is not
/// loaded at all (it may need libraries that are not there: a plugin's
/// own dependency beside it; and its constructors would run).
pub fn check(file: &File, entry: &str) -> Result<Option<bool>, ElfError> {
    let len = file.metadata()?.len();
    let cache = ReadCache::new(file);
    let magic = object::ReadRef::read_bytes_at(&cache, 0, 5).map_err(|_| ElfError::NotElf)?;
    if &magic[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if magic[4] != 2 {
        return Err(ElfError::WrongClass);
    }
    let elf =
        ElfFile64::<Endianness, _>::parse(&cache).map_err(|e| ElfError::Corrupt(e.to_string()))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    if header.e_type(endian) != object::elf::ET_DYN {
        return Err(ElfError::Corrupt(
            "not a shared object (ELF type is not DYN)".into(),
        ));
    }
    for segment in elf.elf_program_headers() {
        let end = segment
            .p_offset(endian)
            .checked_add(segment.p_filesz(endian))
            .ok_or_else(|| ElfError::Corrupt("segment size overflows".into()))?;
        if end > len {
            return Err(ElfError::Corrupt(format!(
                "a segment ends at byte {end} but the file has {len} bytes"
            )));
        }
    }
    let sections_end = header
        .e_shoff(endian)
        .saturating_add(u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian)));
    if sections_end > len {
        return Err(ElfError::Corrupt(format!(
            "section headers end at byte {sections_end} but the file has {len} bytes"
        )));
    }
    use object::{Object, ObjectSymbol};
    if elf.dynamic_symbol_table().is_none() {
        return Ok(None);
    }
    Ok(Some(elf.dynamic_symbols().any(|symbol| {
        symbol.is_definition() && symbol.name() == Ok(entry)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check_path(path: &Path) -> Result<Option<bool>, ElfError> {
        check(&File::open(path)?, "an_entry_point")
    }

    #[test]
    fn text_file_is_not_elf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.so");
        std::fs::write(&p, "hello, world").unwrap();
        assert!(matches!(check_path(&p), Err(ElfError::NotElf)));
    }

    #[test]
    fn truncated_library_is_corrupt() {
        // The host binary itself is a complete ELF file (a PIE executable is
        // ET_DYN too); a prefix of it is not.
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.so");
        std::fs::write(&p, &data[..data.len() / 2]).unwrap();
        assert!(matches!(check_path(&p), Err(ElfError::Corrupt(_))));
        std::fs::write(&p, &data[..100]).unwrap();
        assert!(check_path(&p).is_err());
    }
}
