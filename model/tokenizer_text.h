// Text helpers of the tokenizer (model/tokenizer.h): UTF-8 decoding and validation, lossy UTF-8
// repair (what the Hugging Face decoders do), the GPT-2 byte <-> unicode map of byte-level BPE,
// and Unicode normalization forms (utf8proc). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard::tok {

// Length of the UTF-8 sequence that begins at s[i] (1..4); 1 for a byte that starts none. `s`
// is assumed valid UTF-8 where this is used (input text after ValidateUtf8).
int Utf8Length(unsigned char lead);

// Decodes the code point at s[*i] of valid UTF-8 and advances *i past it.
char32_t NextCodePoint(std::string_view s, size_t* i);

// Appends the UTF-8 encoding of `cp` to *out.
void AppendUtf8(char32_t cp, std::string* out);

// OK, or InvalidArgument "<what> is not valid UTF-8 at byte N".
Status ValidateUtf8(std::string_view s, std::string_view what);

// Repairs bytes into valid UTF-8 the way Rust's String::from_utf8_lossy does: every maximal
// invalid subpart becomes one U+FFFD. With `hold_incomplete`, a trailing sequence that is a valid
// but unfinished prefix is left unconsumed; the number of bytes consumed is returned either way.
size_t AppendLossyUtf8(std::string_view bytes, bool hold_incomplete, std::string* out);

// The GPT-2 byte-level map: every byte has a printable code point (printable Latin-1 bytes map to
// themselves, the others to U+0100 + n). ByteToUnicode(b) is that code point's UTF-8.
const std::string& ByteToUnicode(unsigned char byte);
// The byte of a mapped code point, or -1 when `cp` is not one of the 256 mapped code points.
int UnicodeToByte(char32_t cp);

// Rust's char::is_whitespace (Unicode White_Space).
bool IsWhitespace(char32_t cp);
// Letter or number (Unicode general category L* or N*) or '_': a "word" character.
bool IsWordChar(char32_t cp);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// `text` in the given normal form. `text` must be valid UTF-8.
std::string Normalize(std::string_view text, NormalForm form);

}  // namespace switchyard::tok
