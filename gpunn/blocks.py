"""How a Dense layer runs inside a model's passes, norm and residual connection included.

The model calls these per layer ``i`` with the views of its workspace (names ``A{i}``,
``D{i}``, ... as below); a plain layer takes the fused path it always had (``Dense.forward``,
``Dense.backward``), a block (``norm="layer"`` and/or ``residual=True``) computes

    forward:  N = LN(A_prev) (bfloat16 bits only under bf16), Z = N @ W + b,
              A = [A_prev +] f(Z) [* m] (m: dropout's mask, on the branch before the add)
    backward: dZ = dA [* m] * f'(Z) (into G: the residual connection passes dA itself on),
              dW = N^T dZ, db = sum dZ, dN = dZ W^T,
              dgamma, dbeta, dA_prev = LN'(dN) [+ dA]

Buffers per layer: ``A`` output, ``D`` its gradient (then dZ for a plain layer), ``P`` the
pre-activation (or f(Z) for a residual layer: what act_bwd reads), ``N``/``Nh`` the normalized
input, ``M``/``R`` the row mean and rstd, ``DN`` the input-side gradient, ``G``/``Gh`` dZ of a
residual layer; ``Ah``/``Dh`` and ``Xh`` are the model's bfloat16 copies.
"""

import numpy as np


class BlockPasses:
    """The per-layer pass methods :class:`~gpunn.Dense` inherits (see the module doc)."""

    def buffer_specs(self, i, dtype, bf16):
        """``{name: (row_shape, dtype)}`` of the buffers layer ``i`` needs beyond ``A{i}``,
        ``D{i}`` and the model's bfloat16 copies."""
        specs = {}
        if self.keeps_p or self.residual:
            specs[f"P{i}"] = ((self.n_out,), dtype)
        if self.ln is not None:
            specs[f"Nh{i}" if bf16 else f"N{i}"] = ((self.n_in,), np.uint16 if bf16 else dtype)
            specs[f"M{i}"] = specs[f"R{i}"] = ((1,), dtype)
        if self.ln is not None or self.residual:
            specs[f"DN{i}"] = ((self.n_in,), dtype)
        if self.residual:
            specs[f"G{i}"] = ((self.n_out,), dtype)
            if bf16:
                specs[f"Gh{i}"] = ((self.n_out,), np.uint16)
        return specs

    def run_forward(self, be, A_prev, A_prev_h, views, i, half, masks=None):
        """Layer ``i``'s forward from ``A_prev`` (float) and ``A_prev_h`` (its bfloat16 bits
        under bf16, else None) into ``A{i}`` and, if given, its bfloat16 copy ``half``;
        ``masks``: a :class:`~gpunn.layers.DropoutPass` in training (dropout applies)."""
        out = views[f"A{i}"]
        extra = () if masks is None else (masks,)  # none: called as before dropout existed
        if not self.is_block:
            self.forward(be, A_prev if A_prev_h is None else A_prev_h, out, half,
                         views.get(f"P{i}"), *extra)
            return
        gemm_in = self._norm_forward(be, A_prev, views, i) if self.ln else (
            A_prev if A_prev_h is None else A_prev_h)
        if not self.residual:
            self.forward(be, gemm_in, out, half, views.get(f"P{i}"), *extra)
            return
        Z = views[f"P{i}"]
        be.matmul(gemm_in, self._gemm_W, out=Z, precision=self.precision)
        name, drop = "bias_act_residual", ()
        if masks is not None and self.dropout:  # the branch dropped before the add
            name, drop = "bias_act_residual_drop", self._mask_args(masks)
        if half is None:
            be.kernel(name, self.b, A_prev, self.n_out, self.act, *drop, Z, out)
        else:
            be.kernel(f"{name}_bf16", self.b, A_prev, self.n_out, self.act, *drop, Z, out,
                      half)

    def _norm_forward(self, be, A_prev, views, i):
        """LN(A_prev) into ``N{i}`` (or only its bfloat16 bits, ``Nh{i}``); the GEMM input."""
        half = views.get(f"Nh{i}")
        self.ln.forward(be, A_prev, views[f"M{i}"], views[f"R{i}"], views.get(f"N{i}"), half)
        return views[f"N{i}"] if half is None else half

    def delta(self, be, views, i, masks=None):
        """Turn the output gradient ``D{i}`` into dZ: in place for a plain layer, into
        ``G{i}`` (and ``Gh{i}``) for a residual one, whose ``D{i}`` also flows past it.
        ``masks``: those of the forward (dropout's mask is recomputed and applied)."""
        dropped = masks is not None and self.dropout
        saved = (views[f"P{i}"] if self.keeps_z or self.residual or dropped
                 else views[f"A{i}"])
        if self.residual:
            half = views.get(f"Gh{i}")
            name, drop = "residual_act_bwd", ()
            if dropped:
                name, drop = "residual_act_bwd_drop", self._mask_args(masks)
            if half is None:
                be.kernel(name, saved, views[f"D{i}"], self.act, *drop, views[f"G{i}"])
            else:
                be.kernel(f"{name}_bf16", saved, views[f"D{i}"], self.act, *drop,
                          views[f"G{i}"], half)
            return
        extra = () if masks is None else (masks,)  # none: called as before dropout existed
        self.activation_backward(be, saved, views[f"D{i}"], views.get(f"Dh{i}"), *extra)

    def run_backward(self, be, A_prev, A_prev_h, views, i, ones, dA_prev=None):
        """Layer ``i``'s gradients from dZ (left by :meth:`delta`, or by the loss for the
        last plain layer); ``dA_prev``, if given, receives the gradient of its input."""
        if not self.is_block:
            self.backward(be, A_prev if A_prev_h is None else A_prev_h, views[f"D{i}"], ones,
                          dA_prev, views.get(f"Dh{i}"))
            return
        dZ = views[f"G{i}"] if self.residual else views[f"D{i}"]
        dZh = views.get(f"Gh{i}" if self.residual else f"Dh{i}")
        D = dZ if dZh is None else dZh
        if self.ln is not None:
            gemm_in = views.get(f"Nh{i}", views.get(f"N{i}"))
        else:
            gemm_in = A_prev if A_prev_h is None else A_prev_h
        be.matmul(gemm_in, D, out=self.dW, trans_a=True, precision=self.precision)
        be.matmul(ones, dZ, out=self.db)
        if self.ln is None and dA_prev is None:
            return
        dN = views[f"DN{i}"]
        be.matmul(D, self._gemm_W, out=dN, trans_b=True, precision=self.precision)
        skip = views[f"D{i}"] if self.residual else None
        if self.ln is not None:
            self.ln.backward(be, A_prev, views[f"M{i}"], views[f"R{i}"], dN, dA_prev, skip)
        else:
            be.kernel("residual_add", dN, skip, dA_prev)
