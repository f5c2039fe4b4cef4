/* sd-text-clean.c: CLIP's prompt clean-up (ftfy subset, html.unescape,
 * whitespace, lowercase) in C. See sd-text-clean.h for what and why.
 *
 * Every function here is linear in the length of its input (ftfy's
 * fixed-point loop is capped), so hostile prompts cannot make it slow. */
#include "sd-text-clean.h"

#include <string.h>

/* ---- character classes -------------------------------------------------- */

gboolean
sd_text_py_isspace (gunichar c)
{
  /* Python's str.isspace (): category Zs or bidirectional class WS, B or S.
   * This is what \s means in Python's re for str patterns. GLib's
   * g_unichar_isspace misses U+001C..U+001F and U+0085. */
  if (c <= 0x20)
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  if (c < 0x85)
    return FALSE;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028
         || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Windows-1252 for bytes 0x80..0x9F; the five undefined bytes map to
 * themselves, as in ftfy's "sloppy-windows-1252" and in Python html's
 * _invalid_charrefs. */
/* clang-format off */
static const guint16 cp1252_c1[32] = {
  0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
  0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
  0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
  0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};
/* clang-format on */

/* ---- named character references ----------------------------------------- */

typedef struct
{
  const char *name;
  guint32 cp;
  /* Also recognised without the ';' (the 106 "legacy" names of the HTML5
   * table, which Python's html.unescape also uses as prefixes). */
  guint8 legacy;
} Entity;

/* The HTML 4.01 entities (252 names) plus &apos; and the uppercase legacy
 * names, with the code points of the HTML5 table (which differs from HTML 4
 * for lang/rang). Sorted by strcmp for bsearch. */
/* clang-format off */
static const Entity entities[] = {
  { "AElig", 0x00C6, 1 }, { "AMP", 0x0026, 1 }, { "Aacute", 0x00C1, 1 },
  { "Acirc", 0x00C2, 1 }, { "Agrave", 0x00C0, 1 }, { "Alpha", 0x0391, 0 },
  { "Aring", 0x00C5, 1 }, { "Atilde", 0x00C3, 1 }, { "Auml", 0x00C4, 1 },
  { "Beta", 0x0392, 0 }, { "COPY", 0x00A9, 1 }, { "Ccedil", 0x00C7, 1 }, { "Chi", 0x03A7, 0 },
  { "Dagger", 0x2021, 0 }, { "Delta", 0x0394, 0 }, { "ETH", 0x00D0, 1 },
  { "Eacute", 0x00C9, 1 }, { "Ecirc", 0x00CA, 1 }, { "Egrave", 0x00C8, 1 },
  { "Epsilon", 0x0395, 0 }, { "Eta", 0x0397, 0 }, { "Euml", 0x00CB, 1 }, { "GT", 0x003E, 1 },
  { "Gamma", 0x0393, 0 }, { "Iacute", 0x00CD, 1 }, { "Icirc", 0x00CE, 1 },
  { "Igrave", 0x00CC, 1 }, { "Iota", 0x0399, 0 }, { "Iuml", 0x00CF, 1 },
  { "Kappa", 0x039A, 0 }, { "LT", 0x003C, 1 }, { "Lambda", 0x039B, 0 }, { "Mu", 0x039C, 0 },
  { "Ntilde", 0x00D1, 1 }, { "Nu", 0x039D, 0 }, { "OElig", 0x0152, 0 },
  { "Oacute", 0x00D3, 1 }, { "Ocirc", 0x00D4, 1 }, { "Ograve", 0x00D2, 1 },
  { "Omega", 0x03A9, 0 }, { "Omicron", 0x039F, 0 }, { "Oslash", 0x00D8, 1 },
  { "Otilde", 0x00D5, 1 }, { "Ouml", 0x00D6, 1 }, { "Phi", 0x03A6, 0 }, { "Pi", 0x03A0, 0 },
  { "Prime", 0x2033, 0 }, { "Psi", 0x03A8, 0 }, { "QUOT", 0x0022, 1 }, { "REG", 0x00AE, 1 },
  { "Rho", 0x03A1, 0 }, { "Scaron", 0x0160, 0 }, { "Sigma", 0x03A3, 0 },
  { "THORN", 0x00DE, 1 }, { "Tau", 0x03A4, 0 }, { "Theta", 0x0398, 0 },
  { "Uacute", 0x00DA, 1 }, { "Ucirc", 0x00DB, 1 }, { "Ugrave", 0x00D9, 1 },
  { "Upsilon", 0x03A5, 0 }, { "Uuml", 0x00DC, 1 }, { "Xi", 0x039E, 0 },
  { "Yacute", 0x00DD, 1 }, { "Yuml", 0x0178, 0 }, { "Zeta", 0x0396, 0 },
  { "aacute", 0x00E1, 1 }, { "acirc", 0x00E2, 1 }, { "acute", 0x00B4, 1 },
  { "aelig", 0x00E6, 1 }, { "agrave", 0x00E0, 1 }, { "alefsym", 0x2135, 0 },
  { "alpha", 0x03B1, 0 }, { "amp", 0x0026, 1 }, { "and", 0x2227, 0 }, { "ang", 0x2220, 0 },
  { "apos", 0x0027, 0 }, { "aring", 0x00E5, 1 }, { "asymp", 0x2248, 0 },
  { "atilde", 0x00E3, 1 }, { "auml", 0x00E4, 1 }, { "bdquo", 0x201E, 0 },
  { "beta", 0x03B2, 0 }, { "brvbar", 0x00A6, 1 }, { "bull", 0x2022, 0 }, { "cap", 0x2229, 0 },
  { "ccedil", 0x00E7, 1 }, { "cedil", 0x00B8, 1 }, { "cent", 0x00A2, 1 }, { "chi", 0x03C7, 0 },
  { "circ", 0x02C6, 0 }, { "clubs", 0x2663, 0 }, { "cong", 0x2245, 0 }, { "copy", 0x00A9, 1 },
  { "crarr", 0x21B5, 0 }, { "cup", 0x222A, 0 }, { "curren", 0x00A4, 1 }, { "dArr", 0x21D3, 0 },
  { "dagger", 0x2020, 0 }, { "darr", 0x2193, 0 }, { "deg", 0x00B0, 1 }, { "delta", 0x03B4, 0 },
  { "diams", 0x2666, 0 }, { "divide", 0x00F7, 1 }, { "eacute", 0x00E9, 1 },
  { "ecirc", 0x00EA, 1 }, { "egrave", 0x00E8, 1 }, { "empty", 0x2205, 0 },
  { "emsp", 0x2003, 0 }, { "ensp", 0x2002, 0 }, { "epsilon", 0x03B5, 0 },
  { "equiv", 0x2261, 0 }, { "eta", 0x03B7, 0 }, { "eth", 0x00F0, 1 }, { "euml", 0x00EB, 1 },
  { "euro", 0x20AC, 0 }, { "exist", 0x2203, 0 }, { "fnof", 0x0192, 0 },
  { "forall", 0x2200, 0 }, { "frac12", 0x00BD, 1 }, { "frac14", 0x00BC, 1 },
  { "frac34", 0x00BE, 1 }, { "frasl", 0x2044, 0 }, { "gamma", 0x03B3, 0 }, { "ge", 0x2265, 0 },
  { "gt", 0x003E, 1 }, { "hArr", 0x21D4, 0 }, { "harr", 0x2194, 0 }, { "hearts", 0x2665, 0 },
  { "hellip", 0x2026, 0 }, { "iacute", 0x00ED, 1 }, { "icirc", 0x00EE, 1 },
  { "iexcl", 0x00A1, 1 }, { "igrave", 0x00EC, 1 }, { "image", 0x2111, 0 },
  { "infin", 0x221E, 0 }, { "int", 0x222B, 0 }, { "iota", 0x03B9, 0 }, { "iquest", 0x00BF, 1 },
  { "isin", 0x2208, 0 }, { "iuml", 0x00EF, 1 }, { "kappa", 0x03BA, 0 }, { "lArr", 0x21D0, 0 },
  { "lambda", 0x03BB, 0 }, { "lang", 0x27E8, 0 }, { "laquo", 0x00AB, 1 },
  { "larr", 0x2190, 0 }, { "lceil", 0x2308, 0 }, { "ldquo", 0x201C, 0 }, { "le", 0x2264, 0 },
  { "lfloor", 0x230A, 0 }, { "lowast", 0x2217, 0 }, { "loz", 0x25CA, 0 }, { "lrm", 0x200E, 0 },
  { "lsaquo", 0x2039, 0 }, { "lsquo", 0x2018, 0 }, { "lt", 0x003C, 1 }, { "macr", 0x00AF, 1 },
  { "mdash", 0x2014, 0 }, { "micro", 0x00B5, 1 }, { "middot", 0x00B7, 1 },
  { "minus", 0x2212, 0 }, { "mu", 0x03BC, 0 }, { "nabla", 0x2207, 0 }, { "nbsp", 0x00A0, 1 },
  { "ndash", 0x2013, 0 }, { "ne", 0x2260, 0 }, { "ni", 0x220B, 0 }, { "not", 0x00AC, 1 },
  { "notin", 0x2209, 0 }, { "nsub", 0x2284, 0 }, { "ntilde", 0x00F1, 1 }, { "nu", 0x03BD, 0 },
  { "oacute", 0x00F3, 1 }, { "ocirc", 0x00F4, 1 }, { "oelig", 0x0153, 0 },
  { "ograve", 0x00F2, 1 }, { "oline", 0x203E, 0 }, { "omega", 0x03C9, 0 },
  { "omicron", 0x03BF, 0 }, { "oplus", 0x2295, 0 }, { "or", 0x2228, 0 }, { "ordf", 0x00AA, 1 },
  { "ordm", 0x00BA, 1 }, { "oslash", 0x00F8, 1 }, { "otilde", 0x00F5, 1 },
  { "otimes", 0x2297, 0 }, { "ouml", 0x00F6, 1 }, { "para", 0x00B6, 1 }, { "part", 0x2202, 0 },
  { "permil", 0x2030, 0 }, { "perp", 0x22A5, 0 }, { "phi", 0x03C6, 0 }, { "pi", 0x03C0, 0 },
  { "piv", 0x03D6, 0 }, { "plusmn", 0x00B1, 1 }, { "pound", 0x00A3, 1 },
  { "prime", 0x2032, 0 }, { "prod", 0x220F, 0 }, { "prop", 0x221D, 0 }, { "psi", 0x03C8, 0 },
  { "quot", 0x0022, 1 }, { "rArr", 0x21D2, 0 }, { "radic", 0x221A, 0 }, { "rang", 0x27E9, 0 },
  { "raquo", 0x00BB, 1 }, { "rarr", 0x2192, 0 }, { "rceil", 0x2309, 0 },
  { "rdquo", 0x201D, 0 }, { "real", 0x211C, 0 }, { "reg", 0x00AE, 1 }, { "rfloor", 0x230B, 0 },
  { "rho", 0x03C1, 0 }, { "rlm", 0x200F, 0 }, { "rsaquo", 0x203A, 0 }, { "rsquo", 0x2019, 0 },
  { "sbquo", 0x201A, 0 }, { "scaron", 0x0161, 0 }, { "sdot", 0x22C5, 0 },
  { "sect", 0x00A7, 1 }, { "shy", 0x00AD, 1 }, { "sigma", 0x03C3, 0 }, { "sigmaf", 0x03C2, 0 },
  { "sim", 0x223C, 0 }, { "spades", 0x2660, 0 }, { "sub", 0x2282, 0 }, { "sube", 0x2286, 0 },
  { "sum", 0x2211, 0 }, { "sup", 0x2283, 0 }, { "sup1", 0x00B9, 1 }, { "sup2", 0x00B2, 1 },
  { "sup3", 0x00B3, 1 }, { "supe", 0x2287, 0 }, { "szlig", 0x00DF, 1 }, { "tau", 0x03C4, 0 },
  { "there4", 0x2234, 0 }, { "theta", 0x03B8, 0 }, { "thetasym", 0x03D1, 0 },
  { "thinsp", 0x2009, 0 }, { "thorn", 0x00FE, 1 }, { "tilde", 0x02DC, 0 },
  { "times", 0x00D7, 1 }, { "trade", 0x2122, 0 }, { "uArr", 0x21D1, 0 },
  { "uacute", 0x00FA, 1 }, { "uarr", 0x2191, 0 }, { "ucirc", 0x00FB, 1 },
  { "ugrave", 0x00F9, 1 }, { "uml", 0x00A8, 1 }, { "upsih", 0x03D2, 0 },
  { "upsilon", 0x03C5, 0 }, { "uuml", 0x00FC, 1 }, { "weierp", 0x2118, 0 },
  { "xi", 0x03BE, 0 }, { "yacute", 0x00FD, 1 }, { "yen", 0x00A5, 1 }, { "yuml", 0x00FF, 1 },
  { "zeta", 0x03B6, 0 }, { "zwj", 0x200D, 0 }, { "zwnj", 0x200C, 0 },
};
/* clang-format on */

static int
entity_cmp (const void *key, const void *elem)
{
  return strcmp (key, ((const Entity *) elem)->name);
}

/* Look up name (len bytes, without '&' and ';'). semicolon: whether the
 * reference ended with ';' (without one only legacy names match). */
static const Entity *
entity_lookup (const char *name, gsize len, gboolean semicolon)
{
  char buf[16];
  if (len == 0 || len >= sizeof buf)
    return NULL; /* the longest name in the table has 8 characters */
  memcpy (buf, name, len);
  buf[len] = '\0';
  const Entity *e = bsearch (buf, entities, G_N_ELEMENTS (entities), sizeof (Entity), entity_cmp);
  if (e != NULL && !semicolon && !e->legacy)
    return NULL;
  return e;
}

/* ---- Python html.unescape ------------------------------------------------ */

static gboolean
html_invalid_codepoint (guint32 n)
{
  /* html._invalid_codepoints */
  return (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || (n >= 0x7F && n <= 0x9F)
         || (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE;
}

/* html._replace_charref for a numeric reference of value n (saturated). */
static void
append_numeric_ref (GString *out, guint64 n)
{
  if (n == 0x00)
    g_string_append_unichar (out, 0xFFFD);
  else if (n == 0x0D)
    g_string_append_c (out, '\r');
  else if (n >= 0x80 && n <= 0x9F)
    g_string_append_unichar (out, cp1252_c1[n - 0x80]);
  else if ((n >= 0xD800 && n <= 0xDFFF) || n > 0x10FFFF)
    g_string_append_unichar (out, 0xFFFD);
  else if (html_invalid_codepoint ((guint32) n))
    ; /* dropped */
  else
    g_string_append_unichar (out, (gunichar) n);
}

static gboolean
html_name_char (gunichar c)
{
  return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#'
         && c != ';';
}

/* One reference of html.unescape's regex
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * starting at p (just after the '&'). Appends the replacement and returns the
 * position after the reference, or NULL when the regex does not match there
 * (the caller then keeps the '&'). */
static const char *
html_unescape_one (const char *p, GString *out)
{
  if (*p == '#')
    {
      const char *q = p + 1;
      gboolean hex = FALSE;
      if (g_ascii_isdigit (*q))
        ;
      else if ((*q == 'x' || *q == 'X') && g_ascii_isxdigit (q[1]))
        {
          hex = TRUE;
          q++;
        }
      else
        return NULL;
      guint64 n = 0;
      while (hex ? g_ascii_isxdigit (*q) : g_ascii_isdigit (*q))
        {
          int d = hex ? g_ascii_xdigit_value (*q) : *q - '0';
          if (n <= 0x10FFFF) /* saturate: every value above is treated alike */
            n = n * (hex ? 16 : 10) + d;
          q++;
        }
      if (*q == ';')
        q++;
      append_numeric_ref (out, n);
      return q;
    }

  /* named: up to 32 code points */
  const char *q = p;
  int n_chars = 0;
  while (*q != '\0' && n_chars < 32 && html_name_char (g_utf8_get_char (q)))
    {
      q = g_utf8_next_char (q);
      n_chars++;
    }
  if (n_chars == 0)
    return NULL;
  gsize name_len = q - p;
  gboolean semi = *q == ';';
  const char *end = semi ? q + 1 : q;

  const Entity *e = entity_lookup (p, name_len, semi);
  if (e != NULL)
    {
      g_string_append_unichar (out, e->cp);
      return end;
    }
  /* The longest legacy name that is a proper prefix (>= 2 characters) of
   * s = name[;]; the rest of s is kept ("&notit;" -> "¬it;"). Legacy names
   * are ASCII, so byte and character prefixes coincide. */
  gsize s_len = end - p;
  for (gsize x = MIN (s_len - 1, 15); x >= 2; x--)
    {
      e = entity_lookup (p, x, FALSE);
      if (e != NULL)
        {
          g_string_append_unichar (out, e->cp);
          g_string_append_len (out, p + x, end - (p + x));
          return end;
        }
    }
  g_string_append_c (out, '&');
  g_string_append_len (out, p, end - p);
  return end;
}

char *
sd_text_html_unescape (const char *text)
{
  if (strchr (text, '&') == NULL)
    return g_strdup (text);
  GString *out = g_string_sized_new (strlen (text));
  const char *p = text;
  while (*p != '\0')
    {
      const char *amp = strchr (p, '&');
      if (amp == NULL)
        {
          g_string_append (out, p);
          break;
        }
      g_string_append_len (out, p, amp - p);
      const char *next = html_unescape_one (amp + 1, out);
      if (next == NULL)
        {
          g_string_append_c (out, '&');
          next = amp + 1;
        }
      p = next;
    }
  return g_string_free (out, FALSE);
}

/* ---- ftfy ------------------------------------------------------------------ */

/* ftfy.fixes.unescape_html: only references matching &#?[0-9A-Za-z]{1,24};
 * are touched: named entities of the HTML5 table (here: ours); the uppercased
 * name of an all-lowercase entity ("&EACUTE;" -> "É") when Python's
 * html.unescape would not decode it; numeric references when html.unescape
 * decodes them without leaving a ';'. */
static void
ftfy_unescape_html (const char *text, gsize len, GString *out)
{
  const char *p = text, *stop = text + len;
  while (p < stop)
    {
      if (*p != '&')
        {
          g_string_append_c (out, *p++);
          continue;
        }
      const char *q = p + 1;
      gboolean numeric = q < stop && *q == '#';
      if (numeric)
        q++;
      const char *name = q;
      while (q < stop && g_ascii_isalnum (*q) && q - name < 25)
        q++;
      gsize nlen = q - name;
      if (nlen < 1 || nlen > 24 || q >= stop || *q != ';')
        {
          g_string_append_c (out, *p++);
          continue;
        }
      const char *end = q + 1;
      gboolean done = FALSE;
      /* html_unescape_one reads up to the ';' at most, all inside [p, end) */
      GString *tmp = g_string_new (NULL);
      if (numeric)
        {
          const char *after = html_unescape_one (p + 1, tmp);
          if (after == end && strchr (tmp->str, ';') == NULL)
            {
              g_string_append_len (out, tmp->str, tmp->len);
              done = TRUE;
            }
        }
      else
        {
          const Entity *e = entity_lookup (name, nlen, TRUE);
          if (e != NULL)
            {
              g_string_append_unichar (out, e->cp);
              done = TRUE;
            }
          else
            {
              gboolean upper = TRUE;
              char lower[32];
              for (gsize i = 0; i < nlen; i++)
                {
                  if (g_ascii_islower (name[i]))
                    upper = FALSE;
                  lower[i] = g_ascii_tolower (name[i]);
                }
              const Entity *le = upper ? entity_lookup (lower, nlen, TRUE) : NULL;
              if (le != NULL)
                {
                  html_unescape_one (p + 1, tmp);
                  gboolean unchanged = tmp->len == (gsize) (end - p) && memcmp (tmp->str, p, tmp->len) == 0;
                  if (unchanged)
                    {
                      char ch[8];
                      ch[g_unichar_to_utf8 (le->cp, ch)] = '\0';
                      g_autofree char *up = g_utf8_strup (ch, -1);
                      g_string_append (out, up);
                      done = TRUE;
                    }
                }
            }
        }
      g_string_free (tmp, TRUE);
      if (!done)
        g_string_append_len (out, p, end - p);
      p = end;
    }
}

/* fix_latin_ligatures (ftfy 6 chardata.LIGATURES), or NULL. */
/* clang-format off */
static const char *
ftfy_ligature (gunichar c)
{
  switch (c)
    {
    case 0x0132: return "IJ";
    case 0x0133: return "ij";
    case 0x0149: return "\xCA\xBCn"; /* U+02BC 'n' (then uncurled to "'n") */
    case 0x01F1: return "DZ";
    case 0x01F2: return "Dz";
    case 0x01F3: return "dz";
    case 0x01C4: return "D\xC5\xBD"; /* D U+017D */
    case 0x01C5: return "D\xC5\xBE"; /* D U+017E */
    case 0x01C6: return "d\xC5\xBE"; /* d U+017E */
    case 0x01C7: return "LJ";
    case 0x01C8: return "Lj";
    case 0x01C9: return "lj";
    case 0x01CA: return "NJ";
    case 0x01CB: return "Nj";
    case 0x01CC: return "nj";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xC5\xBFt"; /* U+017F 't' */
    case 0xFB06: return "st";
    default: return NULL;
    }
}
/* clang-format on */

/* remove_control_chars (ftfy chardata.CONTROL_CHARS) */
static gboolean
ftfy_control_char (gunichar c)
{
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F
         || (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC)
         || (c >= 0x1D173 && c <= 0x1D17A) || (c >= 0xE0000 && c <= 0xE007F);
}

/* uncurl_quotes then the single-character part of fix_line_breaks */
static gunichar
ftfy_quotes_lines (gunichar c)
{
  if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
    return '\'';
  if (c >= 0x201C && c <= 0x201F)
    return '"';
  if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
    return '\n';
  return c;
}

/* fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes
 * and fix_line_breaks: in ftfy's order, each a per-character map (CR LF is
 * handled by the caller). */
static void
ftfy_map_char (gunichar c, GString *out)
{
  if (c >= 0x80 && c <= 0x9F)
    c = cp1252_c1[c - 0x80];
  const char *lig = ftfy_ligature (c);
  if (lig != NULL)
    {
      for (const char *l = lig; *l; l = g_utf8_next_char (l))
        g_string_append_unichar (out, ftfy_quotes_lines (g_utf8_get_char (l)));
      return;
    }
  /* fix_character_width: U+3000 -> ' ', and NFKC of U+FF01..U+FFEF when it
   * differs (fullwidth ASCII, halfwidth katakana/hangul/symbols) */
  if (c == 0x3000)
    c = ' ';
  else if (c >= 0xFF01 && c <= 0xFFEF)
    {
      char ch[8];
      ch[g_unichar_to_utf8 (c, ch)] = '\0';
      g_autofree char *k = g_utf8_normalize (ch, -1, G_NORMALIZE_NFKC);
      if (k != NULL && strcmp (k, ch) != 0)
        {
          for (const char *l = k; *l; l = g_utf8_next_char (l))
            g_string_append_unichar (out, ftfy_quotes_lines (g_utf8_get_char (l)));
          return;
        }
    }
  g_string_append_unichar (out, ftfy_quotes_lines (c));
}

/* remove_terminal_escapes (ESC [ (\d|;)* [a-zA-Z], \d = Unicode Nd) and
 * remove_control_chars, which come after the maps above in ftfy's order. */
static void
ftfy_remove_controls (const char *text, GString *out)
{
  const char *p = text;
  while (*p != '\0')
    {
      if (p[0] == 0x1B && p[1] == '[')
        {
          const char *q = p + 2;
          while (*q != '\0' && (*q == ';' || g_unichar_isdigit (g_utf8_get_char (q))))
            q = g_utf8_next_char (q);
          if (g_ascii_isalpha (*q))
            {
              p = q + 1;
              continue;
            }
        }
      gunichar c = g_utf8_get_char (p);
      if (!ftfy_control_char (c))
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
      p = g_utf8_next_char (p);
    }
}

/* One round of ftfy.fix_and_explain's loop on one segment. */
static char *
ftfy_round (const char *seg, gboolean unescape)
{
  gsize len = strlen (seg);
  GString *a = g_string_sized_new (len + 8);
  if (unescape)
    ftfy_unescape_html (seg, len, a);
  else
    g_string_append_len (a, seg, len);

  GString *b = g_string_sized_new (a->len + 8);
  const char *p = a->str;
  while (*p != '\0')
    {
      gunichar c = g_utf8_get_char (p);
      const char *next = g_utf8_next_char (p);
      if (c == '\r' && *next == '\n')
        {
          g_string_append_c (b, '\n');
          p = next + 1;
          continue;
        }
      ftfy_map_char (c, b);
      p = next;
    }
  g_string_free (a, TRUE);

  GString *c = g_string_sized_new (b->len + 8);
  ftfy_remove_controls (b->str, c);
  g_string_free (b, TRUE);

  char *nfc = g_utf8_normalize (c->str, c->len, G_NORMALIZE_NFC);
  if (nfc == NULL) /* not reachable for valid UTF-8 */
    return g_string_free (c, FALSE);
  g_string_free (c, TRUE);
  return nfc;
}

/* ftfy repeats its fixes until a round changes nothing; real text needs one
 * or two rounds (nested entities: one per level). The cap bounds the cost on
 * hostile input such as "&amp;amp;amp;..." (each round is linear). */
#define FTFY_MAX_ROUNDS 16

char *
sd_text_ftfy (const char *text)
{
  /* ftfy.fix_text works line by line (segments end after '\n'), with
   * unescape_html="auto": from the first segment that contains '<' on, HTML
   * entities are left alone (the text may be HTML source). */
  GString *out = g_string_sized_new (strlen (text) + 8);
  gboolean unescape = TRUE;
  const char *p = text;
  while (*p != '\0')
    {
      const char *nl = strchr (p, '\n');
      gsize seg_len = nl ? (gsize) (nl + 1 - p) : strlen (p);
      char *cur = g_strndup (p, seg_len);
      if (unescape && strchr (cur, '<') != NULL)
        unescape = FALSE;
      for (int round = 0; round < FTFY_MAX_ROUNDS; round++)
        {
          char *next = ftfy_round (cur, unescape);
          gboolean same = strcmp (next, cur) == 0;
          g_free (cur);
          cur = next;
          if (same)
            break;
        }
      g_string_append (out, cur);
      g_free (cur);
      p += seg_len;
    }
  return g_string_free (out, FALSE);
}

/* ---- lowercase ---------------------------------------------------------- */

static gboolean
py_cased (gunichar c)
{
  /* Unicode Cased: Lu, Ll, Lt plus Other_Lowercase/Other_Uppercase (the
   * common ones: ordinal indicators, Roman numerals, circled letters). */
  GUnicodeType t = g_unichar_type (c);
  return t == G_UNICODE_UPPERCASE_LETTER || t == G_UNICODE_LOWERCASE_LETTER
         || t == G_UNICODE_TITLECASE_LETTER || c == 0xAA || c == 0xBA
         || (c >= 0x2160 && c <= 0x217F) || (c >= 0x24B6 && c <= 0x24E9);
}

static gboolean
py_case_ignorable (gunichar c)
{
  /* Unicode Case_Ignorable: Mn, Me, Cf, Lm, Sk, and the Word_Break classes
   * MidLetter, MidNumLet, Single_Quote (listed). */
  switch (g_unichar_type (c))
    {
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_FORMAT:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_MODIFIER_SYMBOL:
      return TRUE;
    default:
      break;
    }
  return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0x387 || c == 0x5F4
         || c == 0x2018 || c == 0x2019 || c == 0x2024 || c == 0x2027 || c == 0xFE13
         || c == 0xFE52 || c == 0xFE55 || c == 0xFF07 || c == 0xFF0E || c == 0xFF1A;
}

char *
sd_text_py_lower (const char *text)
{
  /* Python's str.lower is the full lowercase mapping. It differs from the
   * per-character simple mapping (g_unichar_tolower) in two places: U+0130
   * becomes "i" U+0307, and U+03A3 becomes final sigma U+03C2 when a cased
   * letter precedes and none follows (skipping case-ignorables). GLib's
   * g_utf8_strdown uses a simpler final-sigma rule, so it is not used. */
  GString *out = g_string_sized_new (strlen (text));
  const char *p = text;
  while (*p != '\0')
    {
      gunichar c = g_utf8_get_char (p);
      if (c < 0x80)
        g_string_append_c (out, g_ascii_tolower ((char) c));
      else if (c == 0x130)
        g_string_append (out, "i\xCC\x87");
      else if (c == 0x3A3)
        {
          gboolean final = FALSE;
          gunichar before = 0;
          for (const char *q = p; q > text;)
            {
              q = g_utf8_prev_char (q);
              gunichar b = g_utf8_get_char (q);
              if (!py_case_ignorable (b))
                {
                  before = b;
                  break;
                }
            }
          if (before != 0 && py_cased (before))
            {
              final = TRUE;
              for (const char *q = g_utf8_next_char (p); *q != '\0'; q = g_utf8_next_char (q))
                {
                  gunichar f = g_utf8_get_char (q);
                  if (!py_case_ignorable (f))
                    {
                      final = !py_cased (f);
                      break;
                    }
                }
            }
          g_string_append_unichar (out, final ? 0x3C2 : 0x3C3);
        }
      else
        g_string_append_unichar (out, g_unichar_tolower (c));
      p = g_utf8_next_char (p);
    }
  return g_string_free (out, FALSE);
}

/* ---- the whole pipeline ----------------------------------------------------- */

/* strip, collapse each run of Python whitespace to one ' ', strip */
static char *
whitespace_clean (const char *text)
{
  GString *out = g_string_sized_new (strlen (text));
  gboolean pending_space = FALSE;
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (sd_text_py_isspace (c))
        {
          pending_space = out->len > 0;
          continue;
        }
      if (pending_space)
        g_string_append_c (out, ' ');
      pending_space = FALSE;
      g_string_append_unichar (out, c);
    }
  return g_string_free (out, FALSE);
}

char *
sd_text_clean (const char *text, gssize len)
{
  g_autofree char *copy = len < 0 ? g_strdup (text) : g_strndup (text, len);
  g_autofree char *a = sd_text_ftfy (copy);
  g_autofree char *b = sd_text_html_unescape (a);
  g_autofree char *c = sd_text_html_unescape (b);
  g_autofree char *d = whitespace_clean (c);
  return sd_text_py_lower (d);
}
