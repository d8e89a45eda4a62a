"""Chapter 08 (Mixture-of-Experts): the router, the load-balancing loss, the router z-loss and the
MoE layer with grouped dispatch.

The references are minigpt.moe's own functions and module (`route_tokens`, `load_balancing_loss`,
`router_z_loss`, `MoE`). The notebook's MoE has no capacity limit; the cases leave it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minigpt import moe
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig


# ----------------------------------------------------------------------------- the router
def route_in_input_dtype(x, router_weight, top_k, gating="mixtral"):
    """Router matmul and softmax in x's dtype (bf16 here): small logit differences get rounded away.
    ja: ルーターの行列積と softmax を x の dtype (ここでは bf16) で計算しています。ロジットの小さな差が丸めで消えます。"""
    logits = F.linear(x, router_weight.to(x.dtype))
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits.float(), probs.float(), weights.float(), index


def route_always_renormalised(x, router_weight, top_k, gating="mixtral"):
    """Renormalises the k weights for "switch" too, which keeps the raw probabilities.
    ja: 生の確率のままにすべき 'switch' でも k 個の重みを正規化し直しています。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    return logits, probs, weights / weights.sum(dim=-1, keepdim=True), index


def route_never_renormalised(x, router_weight, top_k, gating="mixtral"):
    """Never renormalises: for "mixtral" the k weights must be divided by their sum.
    ja: 正規化し直していません。'mixtral' では k 個の重みをその和で割る必要があります。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    return logits, probs, weights, index


def route_softmax_over_tokens(x, router_weight, top_k, gating="mixtral"):
    """Softmax over dim 0 (the tokens) instead of over the experts.
    ja: エキスパートではなく次元 0 (トークン) で softmax をとっています。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=0)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_top_k_of_logits_then_softmax(x, router_weight, top_k, gating="mixtral"):
    """Softmax over the k best logits only: for "switch" that renormalises, which switch must not do.
    ja: 上位 k 個のロジットだけで softmax をとっています。'switch' ではそれが正規化になり、switch ではしてはいけません。"""
    logits = F.linear(x.float(), router_weight.float())
    top, index = logits.topk(top_k, dim=-1)
    return logits, F.softmax(logits, dim=-1), F.softmax(top, dim=-1), index


def route_top_k_by_ascending_argsort(x, router_weight, top_k, gating="mixtral"):
    """probs.argsort(-1)[:, -k:]: the right k experts, but in ascending order, the best one last.
    ja: probs.argsort(-1)[:, -k:]: k 個のエキスパートは正しいのですが昇順で、最良のものが最後になります。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    index = probs.argsort(dim=-1)[:, -top_k:]
    weights = probs.gather(-1, index)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_detached_gate_weights(x, router_weight, top_k, gating="mixtral"):
    """Takes the gate weights from probs.detach(), as if top-k were not differentiable: the router then learns
    only from the auxiliary losses, never from the experts' outputs.
    ja: top-k が微分できないかのように、ゲート重みを probs.detach() からとっています。ルーターは補助損失からしか学習せず、エキスパートの出力からは学習しません。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.detach().topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_in_float64(x, router_weight, top_k, gating="mixtral"):
    """Runs the router in float64 "for even more precision" and returns float64 logits and probabilities.
    ja: 「さらに精度を上げる」ためルーターを float64 で計算し、ロジットと確率を float64 で返しています。"""
    logits = F.linear(x.double(), router_weight.double())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_gating_swapped(x, router_weight, top_k, gating="mixtral"):
    """Renormalises for "switch" and not for "mixtral": the two conventions the wrong way round.
    ja: 'switch' で正規化し直し、'mixtral' ではしていません。2 つの方式が逆です。"""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "switch":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_by_gathering_top_logits(x, router_weight, top_k, gating="mixtral"):
    """Correct: the k best logits pick the same experts as the k best probabilities; gather the probabilities."""
    logits = x.float() @ router_weight.float().T
    probs = torch.softmax(logits, dim=-1)
    index = logits.topk(top_k, dim=-1).indices
    weights = probs.gather(-1, index)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_with_explicit_softmax_and_sort(x, router_weight, top_k, gating="mixtral"):
    """Correct: softmax written out (exp of logit - max, normalised), a descending sort cut to k."""
    logits = torch.einsum("tc,nc->tn", x.float(), router_weight.float())
    e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
    probs = e / e.sum(dim=-1, keepdim=True)
    weights, index = probs.sort(dim=-1, descending=True)
    weights, index = weights[:, :top_k], index[:, :top_k]
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_in_float64_then_float32(x, router_weight, top_k, gating="mixtral"):
    """Correct: the router in float64 inside, everything returned in float32."""
    logits = F.linear(x.double(), router_weight.double())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits.float(), probs.float(), weights.float(), index


@exercise("ch08.route_tokens", reference=moe.route_tokens, output_names=("logits", "probs", "weights", "index"),
          wrong=[route_in_input_dtype, route_always_renormalised, route_never_renormalised,
                 route_softmax_over_tokens, route_top_k_of_logits_then_softmax, route_top_k_by_ascending_argsort,
                 route_detached_gate_weights, route_in_float64, route_gating_swapped],
          correct=[route_by_gathering_top_logits, route_with_explicit_softmax_and_sort, route_in_float64_then_float32],
          covers="top_k 1, 2 and 3, both gatings (top-1 'mixtral': weight 1), 4 and 8 experts, bfloat16 and "
                 "float16 x and router weights (the router must run in float32), large router logits, the order "
                 "of the k experts, gradients of x and the router weight",
          hint="logits = x.float() @ router_weight.float().T (float32 whatever x's dtype); probs = softmax over the "
               "experts (dim -1); weights, index = probs.topk(k); 'mixtral' divides the k weights by their sum, "
               "'switch' keeps them as they are.",
          hint_ja="logits = x.float() @ router_weight.float().T (x の dtype によらず float32)。probs はエキスパートの次元 "
                  "(dim -1) の softmax。weights, index = probs.topk(k) (良い順)。'mixtral' は k 個の重みをその和で割り、"
                  "'switch' はそのまま使います。重みを detach しないこと。")
def _route_cases():
    g = torch.Generator().manual_seed(80)
    for n_tokens, C, N, k, gating in [(6, 8, 4, 2, "mixtral"), (10, 16, 8, 2, "switch"), (5, 8, 4, 1, "switch"),
                                      (7, 16, 8, 3, "mixtral"), (4, 8, 4, 1, "mixtral")]:
        x, w = torch.randn(n_tokens, C, generator=g), torch.randn(N, C, generator=g)
        yield Case(args=(x, w, k, gating), name=f"{n_tokens} tokens of width {C}, {N} experts, top_k={k}, {gating!r}",
                                           name_ja=f"幅 {C} のトークン {n_tokens} 個、エキスパート {N} 個、top_k={k}、{gating!r}")
    x, w = torch.randn(64, 64, generator=g).bfloat16(), torch.randn(8, 64, generator=g).bfloat16() * 0.05
    yield Case(args=(x, w, 2, "mixtral"), grad=False,
               name="bfloat16 x and router weight: 64 tokens of width 64, 8 experts, top_k=2",
               name_ja="bfloat16 の x とルーターの重み: 幅 64 のトークン 64 個、エキスパート 8 個、top_k=2")
    x, w = torch.randn(16, 32, generator=g).half(), (torch.randn(4, 32, generator=g) * 0.05).half()
    yield Case(args=(x, w, 2, "switch"), grad=False,
               name="float16 x and router weight: 16 tokens of width 32, 4 experts, top_k=2, 'switch'",
               name_ja="float16 の x とルーターの重み: 幅 32 のトークン 16 個、エキスパート 4 個、top_k=2、'switch'")
    x, w = torch.randn(6, 8, generator=g) * 5, torch.randn(4, 8, generator=g) * 2
    yield Case(args=(x, w, 2, "mixtral"), name="large router logits (std about 20): 6 tokens, 4 experts, top_k=2",
                                          name_ja="大きなルーターのロジット (標準偏差およそ 20): トークン 6 個、エキスパート 4 個、top_k=2")


# ----------------------------------------------------------------------------- load-balancing loss
def lb_loss_first_choice_only(router_probs, expert_index, n_experts):
    """Counts only each token's first choice: f sums to 1, and perfect balance gives 1 instead of top_k.
    ja: 各トークンの第 1 候補だけを数えています。f の和が 1 になり、完全に均等なときの値が top_k ではなく 1 になります。"""
    counts = torch.bincount(expert_index[:, 0], minlength=n_experts).to(router_probs.dtype)
    return n_experts * (counts / router_probs.shape[0] * router_probs.mean(0)).sum()


def lb_loss_f_over_assignments(router_probs, expert_index, n_experts):
    """Divides the counts by tokens * k (f sums to 1): perfect balance then gives 1, not top_k.
    ja: 個数を トークン数 * k で割っています (f の和が 1)。完全に均等なときの値が top_k ではなく 1 になります。"""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return n_experts * (counts / expert_index.numel() * router_probs.mean(0)).sum()


def lb_loss_without_n(router_probs, expert_index, n_experts):
    """Forgets the factor N (the number of experts) in N * sum f_i P_i.
    ja: N * Σ f_i P_i の係数 N (エキスパートの数) を忘れています。"""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return (counts / router_probs.shape[0] * router_probs.mean(0)).sum()


def lb_loss_probs_squared(router_probs, expert_index, n_experts):
    """N * sum P_i^2: differentiable, but it ignores where the tokens actually went.
    ja: N * Σ P_i^2: 微分はできますが、トークンが実際にどこへ送られたかを無視しています。"""
    return n_experts * router_probs.mean(0).pow(2).sum()


def lb_loss_without_minlength(router_probs, expert_index, n_experts):
    """torch.bincount without minlength: when the last experts get no token the counts are too short.
    ja: minlength のない torch.bincount です。最後のほうのエキスパートにトークンが来ないと、個数の配列が短くなります。"""
    counts = torch.bincount(expert_index.flatten()).to(router_probs.dtype)
    return n_experts * (counts / router_probs.shape[0] * router_probs.mean(0)).sum()


def lb_loss_mean_over_experts(router_probs, expert_index, n_experts):
    """(f * P).mean() over the experts instead of N * sum: N times too small.
    ja: N * Σ ではなくエキスパートについての (f * P).mean() です。N 倍小さくなります。"""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return (counts / router_probs.shape[0] * router_probs.mean(0)).mean()


def lb_loss_P_of_chosen_only(router_probs, expert_index, n_experts):
    """P_i averages only the probabilities of the tokens sent to expert i (the others count as 0).
    ja: P_i を、エキスパート i に送られたトークンの確率だけで平均しています (それ以外は 0 扱い)。"""
    chosen = torch.zeros_like(router_probs).scatter(1, expert_index, 1.0)
    counts = chosen.sum(0)
    return n_experts * (counts / router_probs.shape[0] * (router_probs * chosen).mean(0)).sum()


def lb_loss_in_place(router_probs, expert_index, n_experts):
    """Divides the probabilities by the number of tokens in place (router_probs /= tokens) before summing.
    ja: 和をとる前に確率をトークン数でインプレースに割っています (router_probs /= tokens)。"""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    tokens = router_probs.shape[0]
    router_probs /= tokens
    return n_experts * (counts / tokens * router_probs.sum(0)).sum()


def lb_loss_detached_probs(router_probs, expert_index, n_experts):
    """Uses router_probs.detach(), as for a statistic: the loss has the right value but cannot train the router.
    ja: 統計量のように router_probs.detach() を使っています。値は正しいのですが、ルーターを学習させられません。"""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return n_experts * (counts / router_probs.shape[0] * router_probs.detach().mean(0)).sum()


def lb_loss_by_one_hot(router_probs, expert_index, n_experts):
    """Correct: one-hot assignments summed over tokens and choices."""
    f = F.one_hot(expert_index, n_experts).sum(dim=(0, 1)).to(router_probs.dtype) / router_probs.shape[0]
    return n_experts * torch.dot(f, router_probs.mean(dim=0))


def lb_loss_by_loop(router_probs, expert_index, n_experts):
    """Correct: a loop over the experts."""
    tokens = router_probs.shape[0]
    total = router_probs.new_zeros(())
    for i in range(n_experts):
        f_i = (expert_index == i).sum() / tokens
        total = total + f_i * router_probs[:, i].mean()
    return n_experts * total


def _balanced_index(n_tokens, n_experts, k):
    return (torch.arange(n_tokens * k) % n_experts).view(n_tokens, k)


@exercise("ch08.load_balancing_loss", reference=moe.load_balancing_loss,
          wrong=[lb_loss_first_choice_only, lb_loss_f_over_assignments, lb_loss_without_n, lb_loss_probs_squared,
                 lb_loss_without_minlength, lb_loss_mean_over_experts, lb_loss_P_of_chosen_only, lb_loss_in_place,
                 lb_loss_detached_probs],
          correct=[lb_loss_by_one_hot, lb_loss_by_loop],
          covers="top_k 1 and 2, 3 to 8 experts, perfect balance (the loss is top_k), collapse onto two experts "
                 "(the last experts get nothing), gradients of the probabilities, inputs left unchanged",
          hint="f_i = (assignments to expert i, all k choices of every token) / tokens (so f sums to k); "
               "P_i = mean router probability of expert i over the tokens; loss = N * sum_i f_i * P_i.",
          hint_ja="f_i = (エキスパート i への割り当て数、各トークンの k 個の選択すべてを数える) / トークン数 (f の和は k)。"
                  "P_i = トークン全体でのエキスパート i のルーター確率の平均。loss = N * Σ_i f_i * P_i。"
                  "torch.bincount には minlength=N を渡します。")
def _lb_cases():
    g = torch.Generator().manual_seed(81)
    for n_tokens, N, k in [(12, 4, 2), (20, 8, 2), (9, 3, 1)]:
        probs = torch.softmax(torch.randn(n_tokens, N, generator=g) * 2, dim=-1)
        yield Case(args=(probs, probs.topk(k, dim=-1).indices, N),
                   name=f"{n_tokens} tokens, {N} experts, top_k={k}, the index of the top-k probabilities",
                   name_ja=f"トークン {n_tokens} 個、エキスパート {N} 個、top_k={k}、上位 k 個の確率のインデックス")
    yield Case(args=(torch.full((8, 4), 0.25), _balanced_index(8, 4, 2), 4),
               name="perfect balance: uniform probabilities, every expert gets 4 of 16 assignments (top_k=2)",
               name_ja="完全に均等: 一様な確率、どのエキスパートも 16 個の割り当てのうち 4 個 (top_k=2)")
    probs = torch.softmax(torch.randn(10, 4, generator=g), dim=-1)
    yield Case(args=(probs, torch.tensor([[0, 1]] * 10), 4), name="collapse: all 10 tokens go to experts 0 and 1",
                                                             name_ja="崩壊: 10 個のトークンすべてがエキスパート 0 と 1 へ")


# ----------------------------------------------------------------------------- router z-loss
def z_loss_not_squared(router_logits):
    """The mean of logsumexp, not of its square.
    ja: logsumexp の 2 乗ではなく、logsumexp そのものの平均です。"""
    return torch.logsumexp(router_logits.float(), dim=-1).mean()


def z_loss_summed(router_logits):
    """Sums over the tokens instead of averaging: grows with the batch.
    ja: トークンで平均せずに和をとっています。バッチとともに大きくなります。"""
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).sum()


def z_loss_max_logit(router_logits):
    """The largest logit squared: close to logsumexp when one expert dominates, not otherwise.
    ja: 最大のロジットの 2 乗です。1 つのエキスパートが支配的なときは logsumexp に近いのですが、そうでなければ違います。"""
    return router_logits.float().max(dim=-1).values.pow(2).mean()


def z_loss_mean_square_logits(router_logits):
    """The mean square of every logit instead of the square of each token's logsumexp.
    ja: 各トークンの logsumexp の 2 乗ではなく、すべてのロジットの 2 乗平均です。"""
    return router_logits.float().pow(2).mean()


def z_loss_naive_logsumexp(router_logits):
    """log(exp(logits).sum()) written out: exp overflows to inf for logits above ~88.
    ja: log(exp(logits).sum()) と書き下しています。ロジットが約 88 を超えると exp が inf にオーバーフローします。"""
    return torch.log(torch.exp(router_logits.float()).sum(-1)).pow(2).mean()


def z_loss_in_input_dtype(router_logits):
    """Forgets .float(): bfloat16 logits give a bfloat16 loss, rounded to 3 significant digits.
    ja: .float() を忘れています。bfloat16 のロジットから、有効数字 3 桁に丸められた bfloat16 の損失が返ります。"""
    return torch.logsumexp(router_logits, dim=-1).pow(2).mean()


def z_loss_over_tokens(router_logits):
    """logsumexp over dim 0 (the tokens) instead of the experts.
    ja: エキスパートではなく次元 0 (トークン) で logsumexp をとっています。"""
    return torch.logsumexp(router_logits.float(), dim=0).pow(2).mean()


def z_loss_as_python_float(router_logits):
    """Returns .item(), a Python float: it cannot be added to the training loss with a gradient.
    ja: .item() (Python の float) を返しています。勾配付きで学習の損失に足せません。"""
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).mean().item()


def z_loss_mean_then_square(router_logits):
    """Squares the mean of logsumexp instead of averaging the squares.
    ja: 2 乗の平均ではなく、logsumexp の平均を 2 乗しています。"""
    return torch.logsumexp(router_logits.float(), dim=-1).mean().pow(2)


def z_loss_stable_written_out(router_logits):
    """Correct: max + log(sum(exp(logits - max))), squared, averaged."""
    z = router_logits.float()
    m = z.max(dim=-1, keepdim=True).values
    lse = (m + torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))).squeeze(-1)
    return (lse * lse).mean()


def z_loss_in_float64(router_logits):
    """Correct: float64 inside, a float32 loss."""
    return torch.logsumexp(router_logits.double(), dim=-1).square().mean().float()


@exercise("ch08.router_z_loss", reference=moe.router_z_loss,
          wrong=[z_loss_not_squared, z_loss_summed, z_loss_max_logit, z_loss_mean_square_logits,
                 z_loss_naive_logsumexp, z_loss_in_input_dtype, z_loss_over_tokens, z_loss_as_python_float,
                 z_loss_mean_then_square],
          correct=[z_loss_stable_written_out, z_loss_in_float64], dtypes=("fp16",),
          covers="small and large logits (std 5, mean 2), logits around 100 (exp overflows), bfloat16 and float16 "
                 "logits with a float32 loss, more tokens than experts, gradients of the logits",
          hint="torch.logsumexp(logits, dim=-1) per token (over the experts), squared, then the mean over tokens.",
          hint_ja="トークンごとに torch.logsumexp(logits.float(), dim=-1) (エキスパートの次元)、それを 2 乗してトークンで"
                  "平均します。損失は float32 のテンソルのまま返します (.item() にしない)。")
def _z_cases():
    g = torch.Generator().manual_seed(82)
    yield Case(args=(torch.randn(6, 4, generator=g),), name="router logits of 6 tokens, 4 experts",
                                                       name_ja="トークン 6 個、エキスパート 4 個のルーターのロジット")
    yield Case(args=(torch.randn(32, 8, generator=g) * 5 + 2,),
               name="large router logits (std 5, mean 2), 32 tokens, 8 experts",
               name_ja="大きなルーターのロジット (標準偏差 5、平均 2)、トークン 32 個、エキスパート 8 個")
    yield Case(args=(torch.randn(5, 8, generator=g).bfloat16() * 3,), name="bfloat16 logits: the loss is float32",
                                                                      name_ja="bfloat16 のロジット: 損失は float32",
               grad=False)
    yield Case(args=(torch.randn(4, 6, generator=g) * 3 + 100,), name="router logits around 100: exp(100) overflows",
                                                                 name_ja="100 付近のルーターのロジット: exp(100) はオーバーフローします")


# ----------------------------------------------------------------------------- the MoE layer
class _WrongMoE(moe.MoE):
    def _loop(self, x, combine="add", use_weights=True, only_first=False, detach_weights=False):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        if detach_weights:
            weights = weights.detach()
        if only_first:
            index, weights = index[:, :1], torch.ones_like(weights[:, :1])
        y = torch.zeros_like(xf)
        for e in range(self.n_experts):
            token, slot = (index == e).nonzero(as_tuple=True)
            if len(token) == 0:
                continue
            out = self.experts[e](xf[token])
            if use_weights:
                out = out * weights[token, slot, None].to(x.dtype)
            if combine == "add":
                y.index_add_(0, token, out)
            else:  # overwrite
                y[token] = out
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


class MoEOverwritesInsteadOfAdding(_WrongMoE):
    """y[tokens] = out: a token's second expert replaces its first instead of adding to it.
    ja: y[tokens] = out: トークンの 2 番目のエキスパートの出力が、1 番目に加算されずに上書きされます。"""

    def forward(self, x):
        return self._loop(x, combine="overwrite")


class MoEWithoutGateWeights(_WrongMoE):
    """Adds the experts' outputs without multiplying them by their gate weights.
    ja: エキスパートの出力にゲート重みを掛けずに足しています。"""

    def forward(self, x):
        return self._loop(x, use_weights=False)


class MoEFirstChoiceOnly(_WrongMoE):
    """Sends each token to its best expert only (weight 1), whatever top_k says.
    ja: top_k にかかわらず、各トークンを最良のエキスパート 1 つだけ (重み 1) に送っています。"""

    def forward(self, x):
        return self._loop(x, only_first=True)


class MoEDenseMixture(moe.MoE):
    """Runs every expert on every token and mixes all N outputs by the router probabilities.
    ja: すべてのエキスパートを全トークンに適用し、N 個の出力をルーター確率で混ぜています。"""

    def forward(self, x):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        y = sum(probs[:, e, None].to(x.dtype) * self.experts[e](xf) for e in range(self.n_experts))
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


class MoEAuxLossOnGateWeights(_WrongMoE):
    """Gives load_balancing_loss the k gate weights instead of the router probabilities of all experts.
    ja: load_balancing_loss に全エキスパートのルーター確率ではなく k 個のゲート重みを渡しています。"""

    def forward(self, x):
        y, aux = self._loop(x)
        B, T, C = x.shape
        logits, probs, weights, index = self.route(x.reshape(-1, C))
        dense = torch.zeros_like(probs).scatter(1, index, weights)
        aux["aux_loss"] = moe.load_balancing_loss(dense, index, self.n_experts)
        return y, aux


class MoEDetachedGateWeights(_WrongMoE):
    """Multiplies by weights.detach(): y is right, but the router never learns from the experts' outputs.
    ja: weights.detach() を掛けています。y は正しいのですが、ルーターがエキスパートの出力から学習しません。"""

    def forward(self, x):
        return self._loop(x, detach_weights=True)


class MoEAuxLossOnDetachedProbs(_WrongMoE):
    """Computes aux_loss from probs.detach(): the loss has the right value but cannot balance the router.
    ja: probs.detach() から aux_loss を計算しています。値は正しいのですが、ルーターの負荷を分散させられません。"""

    def forward(self, x):
        y, aux = self._loop(x)
        B, T, C = x.shape
        logits, probs, weights, index = self.route(x.reshape(-1, C))
        aux["aux_loss"] = moe.load_balancing_loss(probs.detach(), index, self.n_experts)
        return y, aux


class MoEZLossOnProbs(_WrongMoE):
    """Gives router_z_loss the probabilities instead of the logits.
    ja: router_z_loss にロジットではなく確率を渡しています。"""

    def forward(self, x):
        y, aux = self._loop(x)
        B, T, C = x.shape
        logits, probs, weights, index = self.route(x.reshape(-1, C))
        aux["z_loss"] = moe.router_z_loss(probs)
        return y, aux


class MoEAuxLossFirstChoiceOnly(_WrongMoE):
    """Computes aux_loss from each token's first choice only (index[:, :1]).
    ja: 各トークンの第 1 候補だけ (index[:, :1]) から aux_loss を計算しています。"""

    def forward(self, x):
        y, aux = self._loop(x)
        B, T, C = x.shape
        logits, probs, weights, index = self.route(x.reshape(-1, C))
        aux["aux_loss"] = moe.load_balancing_loss(probs, index[:, :1], self.n_experts)
        return y, aux


class MoETokensTiledNotRepeated(moe.MoE):
    """arange(tokens).repeat(k) instead of repeat_interleave(k): the (token, choice) rows of index.flatten()
    get the wrong tokens, so experts run on tokens that never chose them.
    ja: repeat_interleave(k) ではなく arange(tokens).repeat(k) です。index.flatten() の (トークン, 選択) の行に違うトークンが対応し、選んでいないトークンにエキスパートが適用されます。"""

    def forward(self, x):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        flat_expert, flat_weight = index.flatten(), weights.flatten()
        flat_token = torch.arange(xf.shape[0], device=x.device).repeat(self.top_k)
        y = torch.zeros_like(xf)
        for e in range(self.n_experts):
            rows = (flat_expert == e).nonzero(as_tuple=True)[0]
            if len(rows):
                tokens = flat_token[rows]
                y.index_add_(0, tokens, self.experts[e](xf[tokens]) * flat_weight[rows, None].to(x.dtype))
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


class MoERouterInInputDtype(_WrongMoE):
    """Routes in the input's dtype (a bfloat16 x @ a bfloat16 router weight): near-tied experts swap places, so
    some tokens go to the wrong expert.
    ja: 入力の dtype のままルーティングしています (bfloat16 の x と bfloat16 のルーターの重み)。僅差のエキスパートの順位が入れ替わり、一部のトークンが違うエキスパートに送られます。"""

    def route(self, x):
        logits = F.linear(x, self.router.weight.to(x.dtype))
        probs = F.softmax(logits, dim=-1)
        weights, index = probs.topk(self.top_k, dim=-1)
        if self.gating == "mixtral":
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits.float(), probs.float(), weights.float(), index

    def forward(self, x):
        return self._loop(x)


class MoELoopOverTokens(moe.MoE):
    """Correct (slow): a loop over the tokens and their k choices."""

    def forward(self, x):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = route_tokens_for_loop(xf, self.router.weight, self.top_k, self.gating)
        rows = []
        for t in range(xf.shape[0]):
            out = 0
            for j in range(self.top_k):
                out = out + weights[t, j].to(x.dtype) * self.experts[int(index[t, j])](xf[t:t + 1])[0]
            rows.append(out)
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return torch.stack(rows).view(B, T, C), aux


def route_tokens_for_loop(x, router_weight, top_k, gating):
    logits = F.linear(x.float(), router_weight.float())
    probs = logits.softmax(dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


class MoEDenseWithMaskedWeights(moe.MoE):
    """Correct (wasteful): every expert on every token, mixed by a (tokens, N) matrix that holds the gate
    weights of the k chosen experts and zeros elsewhere."""

    def forward(self, x):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        gates = torch.zeros_like(probs).scatter(1, index, weights).to(x.dtype)  # (tokens, N)
        outs = torch.stack([expert(xf) for expert in self.experts], dim=1)  # (tokens, N, C)
        y = torch.einsum("tn,tnc->tc", gates, outs)
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


def _moe_cfg(n_embd: int, n_experts: int, top_k: int, gating: str) -> GPTConfig:
    return GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=n_embd, bias=False, norm="rmsnorm",
                     mlp="swiglu", mlp_hidden=2 * n_embd, n_experts=n_experts, top_k=top_k, moe_gating=gating)


@exercise("ch08.MoE", reference=moe.MoE, kind="module", output_names=("y", "aux"),
          wrong=[MoEOverwritesInsteadOfAdding, MoEWithoutGateWeights, MoEFirstChoiceOnly, MoEDenseMixture,
                 MoEAuxLossOnGateWeights, MoEDetachedGateWeights, MoEAuxLossOnDetachedProbs, MoEZLossOnProbs,
                 MoEAuxLossFirstChoiceOnly, MoETokensTiledNotRepeated, MoERouterInInputDtype],
          correct=[MoELoopOverTokens, MoEDenseWithMaskedWeights], dtypes=("bf16",),
          covers="top_k 1, 2 and 3, both gatings, 4 to 8 experts, batches of 1 to 8, 256 tokens over 16 experts as "
                 "a bfloat16 module (routing in float32), "
                 "both auxiliary losses, gradients of x, the router and every expert, x left unchanged",
          hint="route the (tokens, C) rows; for each expert e, take the (token, choice) pairs that chose e, run the "
               "expert once on those tokens, multiply by their gate weights and ADD into y (index_add_); "
               "aux = {'aux_loss': load_balancing_loss(probs, index, N), 'z_loss': router_z_loss(logits)}.",
          hint_ja="(トークン数, C) の行をルーティングし、エキスパート e ごとに e を選んだ (トークン, 選択) の組を集めて、"
                  "そのトークンに e を 1 回だけ適用し、ゲート重みを掛けて y に加算します (index_add_)。"
                  "aux = {'aux_loss': load_balancing_loss(probs, index, N), 'z_loss': router_z_loss(logits)}。"
                  "重みも確率も detach しないこと。")
def _moe_cases():
    g = torch.Generator().manual_seed(83)
    for n_embd, N, k, gating, shape in [(16, 4, 2, "mixtral", (2, 5)), (32, 8, 2, "switch", (1, 9)),
                                        (16, 4, 1, "switch", (3, 4)), (16, 6, 3, "mixtral", (2, 6))]:
        cfg = _moe_cfg(n_embd, N, k, gating)
        yield Case(init=(cfg,), args=(torch.randn(*shape, n_embd, generator=g),), dtypes=(),
                   name=f"n_embd={n_embd}, {N} experts, top_k={k}, {gating!r}, x of shape {(*shape, n_embd)}",
                   name_ja=f"n_embd={n_embd}、エキスパート {N} 個、top_k={k}、{gating!r}、形状 {(*shape, n_embd)} の x")
    g = torch.Generator().manual_seed(84)  # 256 tokens over 16 experts: some top-2 choices are near ties
    yield Case(init=(_moe_cfg(32, 16, 2, "mixtral"),), args=(torch.randn(8, 32, 32, generator=g),), dtypes=("bf16",),
               name="n_embd=32, 16 experts, top_k=2, 'mixtral', 256 tokens, also as a bfloat16 module (the router must "
                    "still decide in float32)",
               name_ja="n_embd=32、エキスパート 16 個、top_k=2、'mixtral'、トークン 256 個。bfloat16 のモジュールでも試します "
                       "(ルーターの判断は float32 で)")
