/* sd-text-clean.h: the text clean-up OpenAI CLIP applies before tokenising.
 *
 * OpenAI CLIP's simple_tokenizer (and diffusers' CLIPTokenizer with ftfy
 * installed) turns a prompt into BPE input as
 *
 *   ftfy.fix_text (ftfy 6.1.1 defaults) -> html.unescape twice -> strip ->
 *   collapse every run of whitespace (Python's \s+) to one space -> strip ->
 *   str.lower ()
 *
 * This file reproduces that in C without Python. Of ftfy we implement every
 * step that is a deterministic character mapping: HTML entities (only when the
 * text has no '<', as ftfy's "auto" mode), C1 controls read as Windows-1252,
 * Latin ligatures and digraphs, fullwidth/halfwidth forms and U+3000, curly
 * quotes, line breaks, terminal escapes, invisible control characters, NFC;
 * repeated until nothing changes, as ftfy does. Not implemented: ftfy's
 * mojibake repair (fix_encoding: heuristic re-decoding of text that was
 * UTF-8 read as Latin-1/Windows-1252, e.g. "cafÃ©" -> "café"); such text is
 * tokenised as written.
 *
 * html.unescape is Python's algorithm (numeric references with its
 * invalid-code-point rules, named references with the longest-legacy-prefix
 * rule), with a table of the HTML 4 named entities (252) plus &apos; and the
 * uppercase legacy names; HTML5-only names (&hearts; is HTML 4, &bigstar; is
 * not) are left as written.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Clean a prompt as CLIP does (see above). text must be valid UTF-8 of len
 * bytes (len < 0: NUL-terminated). Returns a newly allocated UTF-8 string. */
char *sd_text_clean (const char *text, gssize len);

/* The individual stages, exposed for tests. Each takes valid UTF-8 and
 * returns a newly allocated string. */
char *sd_text_ftfy (const char *text);         /* ftfy.fix_text subset */
char *sd_text_html_unescape (const char *text); /* Python html.unescape, once */
char *sd_text_py_lower (const char *text);     /* Python str.lower */

/* Python's str.isspace (), which is what \s matches in Python's re. */
gboolean sd_text_py_isspace (gunichar c);

G_END_DECLS
