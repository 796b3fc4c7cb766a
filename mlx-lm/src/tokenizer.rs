//! The tokenizer (`tokenizer.json`) and streaming detokenization that never splits UTF-8.
//!
//! Qwen 3.5 uses byte-level BPE: every token stands for a run of bytes, and a multi-byte
//! character (CJK, emoji, accented letters) is often split across two or three tokens.
//! [`StreamDecoder`] turns a stream of token ids into text chunks that are always whole
//! characters: it holds back the bytes of an incomplete character until the rest arrives.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokenizers::decoders::DecoderWrapper;

/// Errors of loading a tokenizer, encoding and decoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `tokenizer.json` could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The vocabulary lacks a token the chat format needs.
    #[error("tokenizer {path} has no {token} token; is this a Qwen (ChatML) tokenizer?")]
    MissingSpecial {
        /// The file.
        path: PathBuf,
        /// The token text, e.g. `<|im_end|>`.
        token: &'static str,
    },
    /// Encoding text failed.
    #[error("cannot encode text: {0}")]
    Encode(String),
    /// Decoding ids failed.
    #[error("cannot decode tokens: {0}")]
    Decode(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    UnknownId {
        /// The id.
        id: u32,
        /// Number of ids the tokenizer knows, added tokens included.
        vocab_size: usize,
    },
}

/// Ids of the special tokens the chat format and generation rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`: end of a document; generation stops on it.
    pub end_of_text: u32,
    /// `<|im_start|>`: opens a chat turn.
    pub im_start: u32,
    /// `<|im_end|>`: closes a chat turn; generation stops on it.
    pub im_end: u32,
    /// `<think>`, where the vocabulary has it.
    pub think: Option<u32>,
    /// `</think>`, where the vocabulary has it.
    pub think_end: Option<u32>,
}

/// A Hugging Face tokenizer plus the special token ids of the Qwen chat format.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    specials: SpecialTokens,
    /// Added tokens marked special: left out when decoding with `skip_special_tokens`.
    special_ids: HashSet<u32>,
    /// Ids known, added tokens included (counting them is not free in `tokenizers`).
    vocab_size: usize,
    byte_level: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials)
            .field("byte_level", &self.byte_level)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model folder.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` file.
    ///
    /// Fails when the file is unreadable, is not a tokenizer, or lacks the ChatML tokens
    /// `<|endoftext|>`, `<|im_start|>` and `<|im_end|>`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Self::from_tokenizer(inner, path)
    }

    fn from_tokenizer(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self, TokenizerError> {
        let required = |token: &'static str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::MissingSpecial {
                    path: path.to_path_buf(),
                    token,
                })
        };
        let specials = SpecialTokens {
            end_of_text: required("<|endoftext|>")?,
            im_start: required("<|im_start|>")?,
            im_end: required("<|im_end|>")?,
            think: inner.token_to_id("<think>"),
            think_end: inner.token_to_id("</think>"),
        };
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter_map(|(id, token)| token.special.then_some(id))
            .collect();
        let vocab_size = inner.get_vocab_size(true);
        Ok(Tokenizer {
            inner,
            specials,
            special_ids,
            vocab_size,
            byte_level,
        })
    }

    /// The special token ids, read from the vocabulary.
    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    /// The ids generation stops on: `<|im_end|>` and `<|endoftext|>`.
    pub fn stop_tokens(&self) -> Vec<u32> {
        vec![self.specials.im_end, self.specials.end_of_text]
    }

    /// Number of ids the tokenizer knows, added tokens included (248,077 for Qwen 3.5; the
    /// model's embedding is padded beyond that).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token given by its text (`"<|im_end|>"`, `"Ġhello"`), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token as stored in the vocabulary (byte-level form for BPE pieces).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text to ids. Special tokens written in the text (`<|im_start|>`, `<think>`)
    /// become their ids; nothing is added around the text (Qwen has no BOS token).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text; invalid UTF-8 (possible mid-character) becomes U+FFFD.
    ///
    /// With `skip_special_tokens`, added tokens marked special (`<|im_end|>`…) are left out.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// A streaming decoder: feed ids one at a time, get text chunks of whole characters.
    pub fn stream(&self, skip_special_tokens: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            skip_special_tokens,
            pending: Vec::new(),
            ids: Vec::new(),
            emitted: 0,
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), TokenizerError> {
        match ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            Some(&id) => Err(TokenizerError::UnknownId {
                id,
                vocab_size: self.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Whether `id` is an added token marked special (`<|im_end|>`, not `<think>`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The bytes a token stands for, as the byte-level decoder maps them: each character of
    /// the token text is one byte through GPT-2's byte table; a token with a character outside
    /// that table (an added token such as `<|im_end|>` written with other characters) stands
    /// for its own UTF-8 text.
    fn token_bytes(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        let text = self
            .inner
            .id_to_token(id)
            .ok_or(TokenizerError::UnknownId {
                id,
                vocab_size: self.vocab_size(),
            })?;
        let mapped: Option<Vec<u8>> = text.chars().map(byte_of_char).collect();
        Ok(mapped.unwrap_or_else(|| text.into_bytes()))
    }
}

/// Turns token ids into text chunks as they arrive, never splitting a character.
///
/// For byte-level vocabularies (Qwen's), each token adds its bytes to a buffer and the
/// longest run of whole characters is returned; the bytes of a character cut by a token
/// boundary wait for the next token. Bytes that can never form a character (the model may
/// emit any byte sequence) come out as U+FFFD, exactly as [`Tokenizer::decode`] renders them,
/// so the chunks always concatenate to the full decode. For other vocabularies it decodes
/// the ids seen so far and returns the new text, holding back a trailing U+FFFD.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    skip_special_tokens: bool,
    /// Byte-level path: bytes of a character not yet complete.
    pending: Vec<u8>,
    /// Generic path: the ids so far and how much of their decode was returned.
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let tokenizer = self.tokenizer;
        if tokenizer.id_to_token(id).is_none() {
            return Err(TokenizerError::UnknownId {
                id,
                vocab_size: tokenizer.vocab_size(),
            });
        }
        if self.skip_special_tokens && tokenizer.is_special(id) {
            return Ok(String::new());
        }
        if !tokenizer.byte_level {
            return self.push_generic(id);
        }
        self.pending.extend(tokenizer.token_bytes(id)?);
        Ok(take_complete_utf8(&mut self.pending))
    }

    /// Ends the stream: returns what is held back, with U+FFFD for an unfinished character.
    pub fn finish(&mut self) -> String {
        if !self.tokenizer.byte_level {
            let text = self
                .tokenizer
                .inner
                .decode(&self.ids, self.skip_special_tokens)
                .unwrap_or_default();
            let rest = text.get(self.emitted..).unwrap_or_default().to_string();
            self.ids.clear();
            self.emitted = 0;
            return rest;
        }
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    /// Whether bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.ids.is_empty()
    }

    fn push_generic(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let text = self
            .tokenizer
            .inner
            .decode(&self.ids, self.skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let Some(new) = text.get(self.emitted..) else {
            // The decode of the longer sequence rewrote earlier text (a decoder that strips
            // or merges across tokens); start a fresh window.
            self.ids.clear();
            self.emitted = 0;
            return Ok(String::new());
        };
        let new = new.to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

/// Removes from `buf` and returns its longest prefix of whole characters. Invalid sequences
/// become U+FFFD (one per maximal invalid run, as `String::from_utf8_lossy` does); a
/// trailing sequence that may still become a character stays in `buf`.
fn take_complete_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&buf[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = buf.len();
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY: `from_utf8` just checked these bytes.
                out.push_str(unsafe { std::str::from_utf8_unchecked(&buf[start..start + valid]) });
                match e.error_len() {
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        start += valid + bad;
                    }
                    None => {
                        start += valid;
                        break;
                    }
                }
            }
        }
    }
    buf.drain(..start);
    out
}

/// The byte a character of byte-level BPE text stands for (GPT-2's table: printable Latin-1
/// characters map to themselves, the 68 other bytes to U+0100..U+0143 in byte order).
fn byte_of_char(c: char) -> Option<u8> {
    static TABLE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut table = [None; 0x144];
        let mut next = 0x100;
        for b in 0..=255u8 {
            if printable(b) {
                table[b as usize] = Some(b);
            } else {
                table[next] = Some(b);
                next += 1;
            }
        }
        table
    });
    table.get(c as usize).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_round_trips() {
        // Each byte has exactly one character and back.
        let mut seen = [false; 256];
        for c in (0x21u32..0x200).filter_map(char::from_u32) {
            if let Some(b) = byte_of_char(c) {
                assert!(!seen[b as usize], "byte {b} mapped twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_of_char('a'), Some(b'a'));
        assert_eq!(byte_of_char(' '), None);
        assert_eq!(byte_of_char('中'), None);
    }

    #[test]
    fn complete_utf8_holds_back_partial_characters() {
        let mut buf = "a€".as_bytes()[..3].to_vec(); // 'a' + 2 of the 3 bytes of '€'
        assert_eq!(take_complete_utf8(&mut buf), "a");
        assert_eq!(buf.len(), 2);
        buf.push(0xAC);
        assert_eq!(take_complete_utf8(&mut buf), "€");
        assert!(buf.is_empty());
        let mut bad = vec![b'x', 0xFF, b'y', 0xE2];
        assert_eq!(take_complete_utf8(&mut bad), "x\u{FFFD}y");
        assert_eq!(bad, vec![0xE2]);
    }
}
