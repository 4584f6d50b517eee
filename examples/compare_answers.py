"""Before/after answers on the held-out prompts (the table in docs/finetune.md).

    python examples/compare_answers.py gemma3:270m gemma3:270m+gemma-template gemma3-chat:270m

Both models answer each prompt of ``HELD_OUT`` as a chat turn, greedily (temperature 0), through
the same path as ``deskai run``: the base with deskai's fallback transcript template (its GGUF
has none), the tuned model with the Gemma 3 template it was trained with.
"""

from __future__ import annotations

import sys

from build_instructions import HELD_OUT

from deskai.engine.chat_template import ChatTemplate
from deskai.engine.engine import EngineOptions
from deskai.engine.manager import ModelManager
from deskai.engine.sampling_params import SamplingParams
from deskai.store import Store
from deskai.tune.template import GEMMA3_CHAT_TEMPLATE

GEMMA_SUFFIX = "+gemma-template"  # the base prompted exactly as the tuned model is


def answer(manager: ModelManager, model: str, prompt: str) -> str:
    loaded = manager.get(model.removesuffix(GEMMA_SUFFIX))
    template = loaded.template
    if model.endswith(GEMMA_SUFFIX):
        template = ChatTemplate(GEMMA3_CHAT_TEMPLATE, bos_token=template.bos_token,
                                eos_token=template.eos_token)
    rendered = template.render([{"role": "user", "content": prompt}])
    params = SamplingParams(max_tokens=48, temperature=0.0, stop=rendered.stop)
    text = "".join(d.text for d in loaded.generate(rendered.text, params,
                                                  add_special=rendered.add_special))
    return text.strip().replace("\n", " / ")


def main() -> None:
    models = sys.argv[1:] or ["gemma3:270m", f"gemma3:270m{GEMMA_SUFFIX}", "gemma3-chat:270m"]
    manager = ModelManager(Store(), EngineOptions(context_length=512, parallel=1, threads=2),
                           keep_alive=-1)
    try:
        print("| prompt | " + " | ".join(models) + " |")
        print("|---" * (len(models) + 1) + "|")
        for prompt in HELD_OUT:
            cells = [answer(manager, model, prompt).replace("|", "\\|") for model in models]
            print(f"| {prompt} | " + " | ".join(cells) + " |")
    finally:
        manager.close()


if __name__ == "__main__":
    main()
