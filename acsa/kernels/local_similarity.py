"""The blocked kernel of the local score: S(i, t) for every (caption, image) pair, or for each caption's
candidate images, computed exactly without ever forming the attention context of every pair.

The score is the asymmetric cross-attention of acsa.model.cross_attention, which holds the parameters, the
projections and the equation as the paper writes it (`AsymmetricCrossAttention.similarity`: the reference
this kernel is tested equal to, in values and gradients). Here it is computed from projected tokens
(`ProjectedImages`, `ProjectedPhrases`); the kernel has no parameters. Training scores the batch's B x B pairs
with it, validation and evaluation score whole galleries.

Exact batched form, for image i with tokens r and caption t with phrases p, a[r, p] the attention weights:
    V_img_r . c_r = sum_p a[r,p] (V_img_r . V_txt_p)     -> one product [T*P, d] @ [d, R*I]
    |c_r|^2       = sum_{p,q} a[r,p] a[r,q] G_t[p,q]     -> G_t = V_txt V_txt^T, a P x P Gram per caption
and the attention logits need only Q.K products (another [T*P, d] @ [d, R*I]). The softmax is left
unnormalised (e = exp(lambda s - shift)): its normaliser cancels in the cosine. The sums over p and the
Gram products run as small batched matmuls. Work is done in blocks of captions x images whose tensors are
laid out [t, p, r, i] (i innermost, contiguous): every reduction runs over an outer axis with contiguous,
vectorised inner loops. Memory is bounded by the block sizes, never by T x I x R x P. On a CPU the blocks
are shared out to one worker thread per torch thread, each running its ops single-threaded (_BlockRunner).

Re-rank (`score_candidates`): captions are first ordered so that neighbours share candidates (MinHash of
each caption's candidate set), then scored in chunks. When a chunk's candidates overlap enough (union at
most `dense_ratio` x k images) every caption x union pair is scored as one dense block and the candidates
picked out; otherwise each caption's candidates are copied into a reused buffer and scored with one
[P, d] @ [d, R*k] product per caption. That copy is what bounds the re-rank on a CPU: each pair needs
2 x R x d floats of image tokens for 4 x R x P x d FLOPs, a few FLOPs per byte fetched from scattered
gallery rows (BENCHMARKS.md has the measured rates).

Axis legend: i images, r image tokens, t captions, p and q phrases, k candidate images per caption,
d projection dim. Padded phrases (mask False) get no weight; a caption without any real phrase scores 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-8
# exp() arguments are shifted by the largest possible logit (lambda, since |s| <= 1 after the
# normalisation over r) when even the smallest possible row maximum, exp(-lambda (1 + slope)), keeps
# |c|^2 ~ e^2 far above float32's smallest normal (1e-38); otherwise by each row's maximum (one more pass).
_CONSTANT_SHIFT_LIMIT = 30.0
# Elements of one [t, p, r, i] block tensor (float32: 4 bytes each) that the blocked scoring aims for:
# large enough for efficient matrix products, small enough that a block's few tensors stay in cache.
_BLOCK_ELEMENTS = 1 << 21
_BLOCK_TEXTS = 32  # captions per block: [t*P, d] @ [d, R*n] products with t*P = 320 rows
# On a GPU, caches do not bound the block: larger blocks mean fewer kernel launches.
_BLOCK_ELEMENTS_GPU = 1 << 26
_BLOCK_TEXTS_GPU = 1024


def block_budget(device: torch.device) -> tuple[int, int]:
    """(captions, elements) of one block on `device`."""
    if device.type == "cpu":
        return _BLOCK_TEXTS, _BLOCK_ELEMENTS
    return _BLOCK_TEXTS_GPU, _BLOCK_ELEMENTS_GPU


@dataclass
class ProjectedImages:
    query: Tensor  # [I, R, d] L2-normalised Q
    value: Tensor  # [I, R, d] V_img
    value_norm: Tensor  # [I, R] |V_img|

    def __getitem__(self, rows: slice | Tensor) -> ProjectedImages:
        return ProjectedImages(self.query[rows], self.value[rows], self.value_norm[rows])


@dataclass
class ProjectedPhrases:
    key: Tensor  # [T, P, d] L2-normalised K
    value: Tensor  # [T, P, d] V_txt
    mask: Tensor  # [T, P] bool, True = real phrase (all True when padding is attended to)

    def __getitem__(self, rows: slice | Tensor) -> ProjectedPhrases:
        return ProjectedPhrases(self.key[rows], self.value[rows], self.mask[rows])


@dataclass
class _TextSide:
    """Per-caption quantities reused by every block of a scoring call."""

    key: Tensor  # [T, P, d]
    value: Tensor  # [T, P, d]
    gram: Tensor  # [T, P, P]: G_t = V_txt V_txt^T
    bias: Tensor  # [T, P, 1, 1]: -shift for real phrases, -inf for padding

    def __getitem__(self, rows: slice | Tensor) -> _TextSide:
        return _TextSide(self.key[rows], self.value[rows], self.gram[rows], self.bias[rows])


def _token_major(x: Tensor) -> Tensor:
    """[n, R, d] -> [d, R*n] (a transposed view of a contiguous [R*n, d] copy): columns ordered (r, n)."""
    return x.transpose(0, 1).reshape(-1, x.shape[-1]).T


def minhash_order(candidates: Tensor, num_hashes: int = 2, seed: int = 0) -> Tensor:
    """An order of the rows of candidates [T, k] (gallery indices) that puts rows with overlapping
    candidate sets next to each other: sort by MinHash signatures (two rows share a MinHash value with
    probability equal to the Jaccard similarity of their sets). Deterministic for a given seed."""
    num_rows = candidates.shape[0]
    if num_rows == 0:
        return torch.arange(0, device=candidates.device)
    size = int(candidates.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    key = torch.zeros(num_rows, dtype=torch.long, device=candidates.device)
    for _ in range(num_hashes):
        permutation = torch.randperm(size, generator=generator).to(candidates.device)
        key = key * size + permutation[candidates].amin(dim=1)
    return torch.sort(key, stable=True).indices


class _TokenGather:
    """Token-major copies of chosen gallery images ([d, R*n] operands, columns ordered (r, n)), written into
    buffers reused from call to call: a fresh large tensor costs page faults at every allocation."""

    def __init__(self, images: ProjectedImages) -> None:
        self.num_tokens, self.dim = images.query.shape[1:]
        self.query = images.query.reshape(-1, self.dim)  # [(I R), d]
        self.value = images.value.reshape(-1, self.dim)
        self.value_norm = images.value_norm  # [I, R]
        self.tokens = torch.arange(self.num_tokens, device=images.query.device)
        grad = torch.is_grad_enabled() and (images.query.requires_grad or images.value.requires_grad)
        self.buffers: list[Tensor] | None = None if grad else [images.query.new_empty(0, self.dim)] * 2

    def _select(self, slot: int, source: Tensor, rows: Tensor) -> Tensor:
        if self.buffers is None:  # differentiable: no writes into preallocated tensors
            return source.index_select(0, rows)
        if self.buffers[slot].shape[0] < rows.numel():
            self.buffers[slot] = source.new_empty(rows.numel(), self.dim)
        return torch.index_select(source, 0, rows, out=self.buffers[slot][: rows.numel()])

    def rows(self, index: Tensor) -> Tensor:
        """Gallery indices [..., n] -> rows [..., R*n] of the flat token tables, ordered (r, n)."""
        return (index.unsqueeze(-2) * self.num_tokens + self.tokens[:, None]).flatten(-2)

    def select(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Rows [R*n] -> query_t, value_t [d, R*n] (valid until the next call: the buffers are reused)."""
        return self._select(0, self.query, rows).T, self._select(1, self.value, rows).T

    def __call__(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gallery indices [n] -> query_t, value_t [d, R*n] and value_norm [R, n]."""
        return (*self.select(self.rows(index)), self.value_norm[index].T)


class _BlockRunner:
    """Runs independent blocks. On a CPU, without gradients, with torch using n > 1 threads: on n worker
    threads, each running its ops single-threaded (torch's thread count is per thread; the caller's stays
    as it is). Blocks then proceed independently instead of every small op of a block waiting for all n
    threads, which on shared, busy cores costs a scheduler time slice per op. Elsewhere: in order, here."""

    def __init__(self, like: Tensor) -> None:
        grad = torch.is_grad_enabled() and like.requires_grad
        self.workers = torch.get_num_threads() if like.device.type == "cpu" and not grad else 1
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _BlockRunner:
        if self.workers > 1:
            self.pool = ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(1,))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def __call__(self, fn, items) -> None:
        """fn(item) for every item; returns when all are done (re-raising the first error)."""
        items = list(items)
        if self.pool is None or len(items) <= 1:
            for item in items:
                fn(item)
            return
        for future in [self.pool.submit(fn, item) for item in items]:
            future.result()


def score_in_blocks(
    images: ProjectedImages,
    num_texts: int,
    num_phrases: int,
    score_block: Callable[[slice, slice, Tensor, Tensor], Tensor],
    text_chunk: int,
    image_chunk: int,
) -> Tensor:
    """[T, I] scores of every caption and image, block by block: `score_block(texts, rows, query_t,
    value_t)` -> [t, n] scores the captions `texts` against the images `rows`, given those images
    token-major (query_t, value_t [d, R*n], columns ordered (r, n)). Blocks hold at most `text_chunk`
    captions x `image_chunk` images, fewer when that makes for cache-sized [t, p, r, n] tensors; the caption
    blocks of an image block run on _BlockRunner's workers."""
    num_images, num_tokens = images.query.shape[:2]
    max_texts, max_elements = block_budget(images.query.device)
    texts = max(1, min(text_chunk, max_texts))
    image_block = max(1, min(image_chunk, max_elements // (texts * num_phrases * num_tokens)))
    out = images.query.new_empty(num_texts, num_images)
    with _BlockRunner(images.query) as run:
        for i0 in range(0, num_images, image_block):
            rows = slice(i0, i0 + image_block)
            query_t, value_t = _token_major(images.query[rows]), _token_major(images.value[rows])  # [d, R*n]

            def score(t0: int, rows=rows, query_t=query_t, value_t=value_t) -> None:
                out[t0 : t0 + texts, rows] = score_block(slice(t0, t0 + texts), rows, query_t, value_t)

            run(score, range(0, num_texts, texts))  # waits: the next image block reuses no memory
    return out


class LocalSimilarityKernel:
    """S(i, t) from projected tokens, for every pair (`score_pairwise`) or for candidate lists
    (`score_candidates`). `attention_scale` is lambda of the phrase softmax, `leaky_slope` the LeakyReLU's."""

    def __init__(self, attention_scale: float, leaky_slope: float) -> None:
        self.attention_scale = attention_scale
        self.leaky_slope = leaky_slope

    def _constant_shift(self, dtype: torch.dtype) -> bool:
        bound = abs(self.attention_scale) * (1.0 + abs(self.leaky_slope))
        return dtype in (torch.float32, torch.float64) and bound <= _CONSTANT_SHIFT_LIMIT

    def _text_side(self, phrases: ProjectedPhrases) -> _TextSide:
        key, value, mask = phrases.key, phrases.value, phrases.mask
        gram = value @ value.transpose(1, 2)  # [t, p, q]
        shift = abs(self.attention_scale) if self._constant_shift(gram.dtype) else 0.0
        bias = torch.where(mask, -shift, float("-inf")).to(gram.dtype)
        return _TextSide(key, value, gram, bias[:, :, None, None])

    def _block(self, text: _TextSide, query_t: Tensor, value_t: Tensor, value_norm: Tensor) -> Tensor:
        """S [t, n] of t captions against n images given token-major: query_t, value_t [d, R*n] and
        value_norm [R, n], columns ordered (r, n)."""
        logits = torch.matmul(text.key, query_t)  # [t, p, R*n] cosines Q.K
        return self._scores(text, logits, lambda: torch.matmul(text.value, value_t), value_norm)

    def _scores(self, text: _TextSide, logits: Tensor, dots_fn, value_norm: Tensor) -> Tensor:
        """S [t, n] from the products of a block: logits Q.K [t, p, R*n] and `dots_fn()` giving
        V_txt . V_img [t, p, R*n] (called late, so that fewer block tensors are alive at once)."""
        inplace = not (torch.is_grad_enabled() and logits.requires_grad)
        num_texts, num_phrases = text.key.shape[:2]
        num_tokens = value_norm.shape[-2]
        s = logits.view(num_texts, num_phrases, num_tokens, -1)  # [t, p, r, n]
        s = F.leaky_relu(s, self.leaky_slope, inplace=inplace)
        # |s[:, p]| over r: sum of squares as a [1, r] @ [r, n] product per (t, p)
        squares = (s * s).view(num_texts * num_phrases, num_tokens, -1)
        norm_sq = torch.matmul(s.new_ones(1, num_tokens), squares)  # [t*p, 1, n]
        inv_norm = (norm_sq.sqrt_() if inplace else norm_sq.sqrt()) + EPS
        inv_norm = inv_norm.reciprocal_().view(num_texts, num_phrases, 1, -1)  # [t, p, 1, n]
        if inplace and self._constant_shift(s.dtype):
            bias = text.bias
        else:  # shift each (t, r, n) row by its largest real logit: z >= 1 keeps gradients finite
            row_max = (self.attention_scale * s * inv_norm + text.bias).amax(dim=1, keepdim=True)
            bias = text.bias - row_max.detach().clamp_min(torch.finfo(s.dtype).min)
        # e = exp(lambda s / |s| + bias): the unnormalised softmax over p, 0 at padded phrases
        if inplace:
            torch.addcmul(bias, s, inv_norm, value=self.attention_scale, out=s)
            e = s.exp_().view(num_texts, num_phrases, -1)  # [t, p, R*n]
        else:
            e = torch.addcmul(bias, s, inv_norm, value=self.attention_scale).exp()
            e = e.view(num_texts, num_phrases, -1)
        gram_e = torch.matmul(text.gram, e)  # [t, q, R*n]: sum_p G[q, p] e_p
        dots = dots_fn()  # [t, p, R*n] V_txt_p . V_img_r
        ones = e.new_ones(1, num_phrases)
        if inplace:
            # with z = sum_p e (never formed): [t, 1, R*n] z (V_img_r . c_r) and z^2 |c_r|^2
            numerator = torch.matmul(ones, dots.mul_(e))
            context_sq = torch.matmul(ones, gram_e.mul_(e))
        else:
            numerator = torch.matmul(ones, dots * e)
            context_sq = torch.matmul(ones, gram_e * e)
        # cos(V_img_r, c_r) = numerator / sqrt(|V_img_r|^2 context_sq): z cancels. A caption without a real
        # phrase has numerator = context_sq = 0: the clamp keeps 0 * rsqrt(tiny) = 0, with finite gradients.
        value_sq = value_norm.square().reshape(*value_norm.shape[:-2], 1, -1)  # [(t,) 1, R*n]
        # without gradients the constant shift can leave z tiny, so the floor is float's smallest normal;
        # with gradients z >= 1 and a larger floor keeps rsqrt's derivative finite (0 * inf would be NaN)
        tiny = torch.finfo(context_sq.dtype).tiny if inplace else EPS * EPS
        if inplace:
            cosine = numerator.mul_(context_sq.mul_(value_sq).clamp_min_(tiny).rsqrt_())  # [t, 1, R*n]
        else:
            cosine = numerator * (context_sq * value_sq).clamp_min(tiny).rsqrt()
        return cosine.view(num_texts, num_tokens, -1).mean(dim=1)  # [t, n]

    def score_pairwise(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        text_chunk: int = 128,
        image_chunk: int = 512,
    ) -> Tensor:
        """S(i, t) for every caption and image: [T, I]. Blocks hold at most `text_chunk` captions x
        `image_chunk` images (smaller when that makes for cache-sized blocks)."""
        text = self._text_side(phrases)

        def block(texts: slice, rows: slice, query_t: Tensor, value_t: Tensor) -> Tensor:
            return self._block(text[texts], query_t, value_t, images.value_norm[rows].T)  # value_norm [R, n]

        num_texts, num_phrases = phrases.key.shape[:2]
        return score_in_blocks(images, num_texts, num_phrases, block, text_chunk, image_chunk)

    def score_candidates(
        self,
        images: ProjectedImages,
        phrases: ProjectedPhrases,
        candidates: Tensor,
        text_chunk: int = 128,
        dense_ratio: float = 4.0,
    ) -> Tensor:
        """S(candidates[t, j], t) for each caption's candidate images: [T, k].

        Captions are visited in MinHash order (overlapping candidate sets together), in chunks of at most
        `text_chunk` (and _BLOCK_TEXTS). A chunk whose union of candidates is at most `dense_ratio` x k
        images is scored densely against that union (efficient products, some pairs not needed); otherwise
        each caption's candidates are gathered (only the needed pairs, but a copy of scattered gallery rows
        per pair, which costs more than the products on a CPU; the default 4 is the break-even measured there,
        BENCHMARKS.md).
        """
        num_texts, k = candidates.shape
        out = images.query.new_empty(num_texts, k)
        if num_texts == 0 or k == 0:
            return out
        text = self._text_side(phrases)
        order = minhash_order(candidates)
        max_texts, max_elements = block_budget(images.query.device)
        if images.query.device.type != "cpu":  # batched gathers [t, R*k, d] stay within the block budget
            max_texts = min(
                max_texts, max(1, max_elements // (images.query.shape[1] * k * images.query.shape[2]))
            )
        chunk = max(1, min(text_chunk, max_texts))
        gathers = threading.local()  # each worker thread copies candidates into its own buffers

        def score(start: int) -> None:
            if not hasattr(gathers, "gather"):
                gathers.gather = _TokenGather(images)
            rows = order[start : start + chunk]
            index = candidates[rows]  # [t, k]
            union, position = torch.unique(index, return_inverse=True)  # position [t, k] into union
            if union.numel() <= dense_ratio * k:
                out[rows] = self._score_dense(text[rows], gathers.gather, union).gather(1, position)
            else:
                out[rows] = self._score_gathered(text[rows], gathers.gather, index)

        with _BlockRunner(images.query) as run:
            run(score, range(0, num_texts, chunk))
        return out

    def _score_gathered(self, text: _TextSide, gather: _TokenGather, index: Tensor) -> Tensor:
        """S [t, k] of each caption against its own candidates index [t, k]. On a CPU, per caption: its
        candidates are copied token-major into a cache-sized buffer and multiplied at once ([P, d] @
        [d, R*k]); elsewhere all captions' candidates are gathered at once for batched products."""
        num_texts, num_phrases = text.key.shape[:2]
        value_norm = gather.value_norm[index].transpose(1, 2)  # [t, R, k]
        rows = gather.rows(index)  # [t, R*k], ordered (r, k)
        if index.device.type != "cpu" or gather.buffers is None:
            rows = rows.reshape(-1)
            shape = (num_texts, -1, gather.dim)  # [t, R*k, d]
            query_t = gather.query.index_select(0, rows).view(shape).transpose(1, 2)
            value_t = gather.value.index_select(0, rows).view(shape).transpose(1, 2)
            logits = torch.bmm(text.key, query_t)  # [t, p, R*k]
            return self._scores(text, logits, lambda: torch.bmm(text.value, value_t), value_norm)
        logits = text.key.new_empty(num_texts, num_phrases, gather.num_tokens * index.shape[1])
        dots = torch.empty_like(logits)
        for j in range(num_texts):
            query_t, value_t = gather.select(rows[j])  # [d, R*k]
            torch.mm(text.key[j], query_t, out=logits[j])
            torch.mm(text.value[j], value_t, out=dots[j])
        return self._scores(text, logits, lambda: dots, value_norm)

    def _score_dense(self, text: _TextSide, gather: _TokenGather, union: Tensor) -> Tensor:
        """S [t, U] of a chunk's captions against every image of `union` (gallery indices), in blocks."""
        num_texts, num_phrases = text.key.shape[:2]
        max_elements = block_budget(union.device)[1]
        image_block = max(1, max_elements // (num_texts * num_phrases * gather.num_tokens))
        blocks = range(0, union.numel(), image_block)
        return torch.cat([self._block(text, *gather(union[u : u + image_block])) for u in blocks], dim=1)
