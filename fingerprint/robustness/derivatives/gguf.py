"""``gguf``: the merged model converted to GGUF by llama.cpp's converter, quantized, and probed as its users probe
it: the ``.gguf`` file through the llamacpp backend, or ``llama_cpp.server``'s OpenAI-compatible endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


def gguf_file(ctx: Context, quant: str):
    """The fingerprinted model as a GGUF of type ``quant`` (the f16 conversion is made once)."""
    from fingerprint.robustness.tools import quantize, to_gguf

    f16 = to_gguf(ctx.saved("fingerprinted"), ctx.workdir / "fingerprinted-f16.gguf")
    return f16 if quant == "F16" else quantize(f16, ctx.workdir / f"fingerprinted-{quant}.gguf", quant)


@register("gguf")
@dataclass(frozen=True)
class Gguf(Derivative):
    quant: str = "Q4_K_M"
    via: str = "file"  # file: the llamacpp backend; server: llama_cpp.server + the openai backend

    @property
    def label(self) -> str:
        how = "the .gguf file (llamacpp backend)" if self.via == "file" else "llama_cpp.server (openai backend)"
        return f"llama.cpp GGUF {self.quant}, through {how}"

    def apply(self, ctx: Context) -> Suspect:
        path = gguf_file(ctx, self.quant)
        if self.via == "file":
            return Suspect(backend="llamacpp", backend_args={"model": str(path)})
        from fingerprint.robustness.tools import LlamaServer

        server = LlamaServer(path)
        return Suspect(backend="openai", backend_args={"model": "suspect", "base_url": server.base_url,
                                                       "cache": "off", "concurrency": 1,
                                                       "token_param": "max_tokens"},  # it ignores the other
                       close=server.stop)
