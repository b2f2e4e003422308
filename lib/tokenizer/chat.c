/* chat.c - chat templates (see chat.h). The strings are those of the models'
 * own Jinja templates for a single user turn with add_generation_prompt. */
#include "chat.h"

#include <string.h>

#include "tokenizer.h"

const char *const lk_chat_names = "llama3, qwen, none";

static const char *const qwen_default_system =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

int lk_chat_known(const char *name) {
    return name && (!strcmp(name, "llama3") || !strcmp(name, "qwen") || !strcmp(name, "none"));
}

char *lk_chat_format(const char *name, const char *system, const char *user, lk_err *err) {
    if (!name || !lk_chat_known(name)) {
        lk_seterr(err, LK_EUSAGE, "unknown chat template '%s' (expected one of: %s)",
                  name ? name : "(null)", lk_chat_names);
        return NULL;
    }
    if (!user) user = "";
    if (!strcmp(name, "none")) return lk_dup(user, err);
    if (!strcmp(name, "llama3")) {
        if (system)
            return lk_fmt(err, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n%s"
                               "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\n",
                               system, user);
        return lk_fmt(err, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n",
                           user);
    }
    /* qwen */
    return lk_fmt(err, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
                       "<|im_start|>assistant\n",
                       system ? system : qwen_default_system, user);
}

int lk_chat_check(const char *name, const lk_tokenizer *tok, const char *tok_name, lk_err *err) {
    static const char *const llama3[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                         "<|eot_id|>", NULL};
    static const char *const qwen[] = {"<|im_start|>", "<|im_end|>", NULL};
    const char *const *need = !name ? NULL : !strcmp(name, "llama3") ? llama3 : !strcmp(name, "qwen") ? qwen : NULL;
    for (; need && *need; need++)
        if (lk_tok_id(tok, *need) < 0)
            return lk_seterr(err, LK_EINPUT,
                             "%s: no special token %s, which the %s chat template writes (expected the tokenizer "
                             "of a %s model; use the model's own template, or --template none)",
                             tok_name, *need, name, !strcmp(name, "llama3") ? "Llama-3" : "Qwen");
    return 0;
}
