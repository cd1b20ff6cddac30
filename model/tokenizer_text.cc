#include "model/tokenizer_text.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>

namespace switchyard::tok {

int Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

char32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto lead = static_cast<unsigned char>(s[*i]);
  const int len = Utf8Length(lead);
  if (len == 1 || *i + len > s.size()) {
    ++*i;
    return lead;
  }
  char32_t cp = lead & (0x7F >> len);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3F);
  *i += len;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Length of the valid UTF-8 sequence at bytes[i]; 0 when the bytes there are invalid, with
// *valid_prefix = how many bytes form a valid (maximal) prefix (>= 1), and *complete = false when
// the input ended inside a valid prefix. Ranges per the Unicode standard, table 3-7.
size_t ValidSequence(std::string_view bytes, size_t i, size_t* valid_prefix, bool* complete) {
  const auto b0 = static_cast<unsigned char>(bytes[i]);
  *complete = true;
  *valid_prefix = 1;
  if (b0 < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= bytes.size()) {
      *complete = false;
      return 0;
    }
    const auto b = static_cast<unsigned char>(bytes[i + k]);
    if (b < lo || b > hi) return 0;
    lo = 0x80;
    hi = 0xBF;
    *valid_prefix = k + 1;
  }
  return len;
}

}  // namespace

Status ValidateUtf8(std::string_view s, std::string_view what) {
  size_t i = 0;
  while (i < s.size()) {
    size_t prefix;
    bool complete;
    const size_t len = ValidSequence(s, i, &prefix, &complete);
    if (len == 0) {
      return InvalidArgumentError(std::string(what) + " is not valid UTF-8 at byte " +
                                  std::to_string(i));
    }
    i += len;
  }
  return OkStatus();
}

size_t AppendLossyUtf8(std::string_view bytes, bool hold_incomplete, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t prefix;
    bool complete;
    const size_t len = ValidSequence(bytes, i, &prefix, &complete);
    if (len > 0) {
      out->append(bytes.substr(i, len));
      i += len;
    } else if (!complete && hold_incomplete) {
      return i;
    } else {
      out->append("\xEF\xBF\xBD");
      i += prefix;
    }
  }
  return i;
}

namespace {

struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::array<int, 324> to_byte;  // every mapped code point is < 0x100 + 68
  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? b : 0x100 + extra++;
      AppendUtf8(cp, &to_unicode[b]);
      to_byte[cp] = b;
    }
  }
};

const ByteMap& Map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::string& ByteToUnicode(unsigned char byte) { return Map().to_unicode[byte]; }

int UnicodeToByte(char32_t cp) { return cp < Map().to_byte.size() ? Map().to_byte[cp] : -1; }

bool IsWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool IsWordChar(char32_t cp) {
  if (cp == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

std::string Normalize(std::string_view text, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNFC:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::kNFD:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::kNFKC:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::kNFKD:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &result,
                                          static_cast<utf8proc_option_t>(options));
  // The input is validated UTF-8, so utf8proc cannot fail except on allocation failure.
  SY_CHECK(n >= 0);
  std::string out(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  std::free(result);
  return out;
}

}  // namespace switchyard::tok
