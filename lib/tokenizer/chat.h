/* chat.h - chat templates: wrap a user message (and an optional system
 * message) the way a model's chat template does, ready for the assistant's
 * reply. With "llama3" the BOS token is part of the text: encode the result
 * with add_special = 0. */
#ifndef LEANK_CHAT_H
#define LEANK_CHAT_H

#include "util.h"

/* Names accepted by lk_chat_format, comma separated ("llama3, qwen, none"). */
extern const char *const lk_chat_names;

/* Returns 1 if name is a known template. */
int lk_chat_known(const char *template_name);

/* New heap string (free()) holding the formatted prompt, or NULL with err set
 * (LK_EUSAGE: unknown template name; LK_ENOMEM). system may be NULL: llama3 then has no
 * system block, qwen uses its default system message, none ignores it. */
char *lk_chat_format(const char *template_name, const char *system, const char *user, lk_err *err);

/* Error (LK_EINPUT) unless the tokenizer has every special token the
 * template writes (llama3: <|begin_of_text|>, <|start_header_id|>,
 * <|end_header_id|>, <|eot_id|>; qwen: <|im_start|>, <|im_end|>): a template
 * a tokenizer lacks would be encoded as plain text. tok_name names the
 * tokenizer in the message. */
struct lk_tokenizer;
int lk_chat_check(const char *template_name, const struct lk_tokenizer *tok, const char *tok_name,
                  lk_err *err);

#endif
