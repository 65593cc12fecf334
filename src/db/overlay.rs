//! A state-database backend that never writes its file: reads come from the
//! file, and every change stays in memory, in blocks copied on first write.
//!
//! redb writes when it opens a database (its header), when it repairs one after
//! a crash, and when the log is replayed into it. A store opened where nothing
//! can be written (a full or read-only file system), or a state database only
//! inspected, runs on this instead: it is the file as it is, plus what was done
//! to it since, all of which is gone when it is dropped.

use std::collections::BTreeMap;
use std::io;

use parking_lot::Mutex;

const BLOCK: u64 = 4096;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Overlay {
    file: Box<dyn redb::StorageBackend>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The length redb sees.
    len: u64,
    /// Bytes of the file at or after this offset are no longer seen (the
    /// storage was cut there and maybe grown again, with zeros).
    file_visible: u64,
    /// Blocks changed since opening, by their index.
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl Overlay {
    /// Wraps the backend of the file, which is only ever read.
    pub(crate) fn new(file: Box<dyn redb::StorageBackend>) -> io::Result<Overlay> {
        let len = file.len()?;
        Ok(Overlay {
            file,
            state: Mutex::new(State {
                len,
                file_visible: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    /// The file's bytes of block `index` as seen now (zeros past what is seen).
    fn file_block(&self, state: &State, index: u64) -> io::Result<Vec<u8>> {
        let start = index * BLOCK;
        let mut block = vec![0u8; BLOCK as usize];
        let end = (start + BLOCK).min(state.file_visible);
        if end > start {
            let n = (end - start) as usize;
            self.file.read(start, &mut block[..n])?;
        }
        Ok(block)
    }
}

impl redb::StorageBackend for Overlay {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.state.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = self.state.lock();
        let end = offset + out.len() as u64;
        if end > state.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end ({})",
                    out.len(),
                    state.len
                ),
            ));
        }
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - at) as usize);
            let done = (at - offset) as usize;
            let target = &mut out[done..done + n];
            match state.blocks.get(&index) {
                Some(block) => target.copy_from_slice(&block[within..within + n]),
                None => {
                    let visible = state.file_visible;
                    let from_file = visible.saturating_sub(at).min(n as u64) as usize;
                    if from_file > 0 {
                        self.file.read(at, &mut target[..from_file])?;
                    }
                    target[from_file..].fill(0);
                }
            }
            at += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.state.lock();
        if len < state.len {
            state.file_visible = state.file_visible.min(len);
            state.blocks.retain(|index, _| index * BLOCK < len);
            let within = (len % BLOCK) as usize;
            if within > 0
                && let Some(block) = state.blocks.get_mut(&(len / BLOCK))
            {
                block[within..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut state = self.state.lock();
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - at) as usize);
            if !state.blocks.contains_key(&index) {
                let block = self.file_block(&state, index)?;
                state.blocks.insert(index, block);
            }
            let done = (at - offset) as usize;
            if let Some(block) = state.blocks.get_mut(&index) {
                block[within..within + n].copy_from_slice(&data[done..done + n]);
            }
            at += n as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    // No byte-range locks (the defaults refuse them): redb then runs without
    // them (the store's lock keeps every other user out), and the file may be
    // open read-only.
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    fn file(bytes: &[u8]) -> Box<dyn redb::StorageBackend> {
        let backend = redb::backends::InMemoryBackend::new();
        backend.set_len(bytes.len() as u64).unwrap();
        backend.write(0, bytes).unwrap();
        Box::new(backend)
    }

    #[test]
    fn changes_stay_in_memory() {
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let overlay = Overlay::new(file(&original)).unwrap();
        overlay.write(4090, &[0xaa; 20]).unwrap();
        let mut out = vec![0u8; 10_000];
        overlay.read(0, &mut out).unwrap();
        let mut expected = original.clone();
        expected[4090..4110].fill(0xaa);
        assert_eq!(out, expected);
        // Shrinking hides the file's bytes; growing again shows zeros.
        overlay.set_len(5000).unwrap();
        overlay.set_len(9000).unwrap();
        let mut tail = vec![1u8; 4000];
        overlay.read(5000, &mut tail).unwrap();
        assert!(tail.iter().all(|b| *b == 0));
        let mut head = vec![0u8; 4200];
        overlay.read(0, &mut head).unwrap();
        assert_eq!(head, expected[..4200]);
        overlay.write(12_000, &[7; 10]).unwrap();
        assert_eq!(overlay.len().unwrap(), 12_010);
        assert!(overlay.read(12_000, &mut [0; 20]).is_err());
        // The file itself is as it was.
        let mut back = vec![0u8; 10_000];
        overlay.file.read(0, &mut back).unwrap();
        assert_eq!(back, original);
    }
}
