//! The training step on a [`Backend`]: forward with LoRA branches, cross-entropy on the answer tokens and
//! the hand-written backward, step for step the CPU trainer's ([`crate::train::forward`],
//! [`crate::train::backward`]) with the same fused q|k|v and gate|up weights. Differences, all in how the
//! work is laid out for a GPU:
//! - attention materialises the `[seq, seq]` scores of a pass of heads for all sequences of the batch at
//!   once (strided-batched GEMMs over the batch, one softmax launch over the pass's rows; as many heads
//!   per pass as [`SCRATCH_BYTES`] allows, so long sequences need not hold every head's scores), keeps
//!   only the log-sum-exp per row, and the backward recomputes the probabilities from it;
//! - dropout masks are drawn on the device from a per-branch seed (taken from the step's RNG, so runs
//!   and resumed runs repeat) and recomputed in the backward instead of stored.

use super::backend::{Backend, ColGemm, KArgs, Mat, RowGemm};
use super::DeviceSteps;
use crate::config::ModelConfig;
use crate::lora::{LoraParams, Slot, Target};
use crate::train::base::FrozenBase;
use crate::train::data::Batch;
use crate::train::error::TrainError;
use rand::rngs::StdRng;
use rand::Rng;

/// Device memory the attention scores and their gradient may take (both buffers together) by default.
pub const SCRATCH_BYTES: usize = 1 << 30;

/// Address of element `off` of an f32 buffer at `addr`.
fn at(addr: u64, off: usize) -> u64 {
    addr + 4 * off as u64
}

fn bits(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&x| f32::from_bits(x)).collect()
}

#[derive(Debug, Clone, Copy)]
struct DevLayer {
    ln1: u64,
    ln2: u64,
    w_qkv: u64,
    b_qkv: Option<u64>,
    w_o: u64,
    b_o: Option<u64>,
    w_gu: u64,
    b_gu: Option<u64>,
    w_down: u64,
    b_down: Option<u64>,
}

/// One block's saved activations (as [`crate::train::acts::LayerActs`]).
#[derive(Debug, Clone, Copy)]
struct LayerActs {
    inv1: u64,
    xn1: u64,
    qkv: u64,
    lse: u64,
    attn: u64,
    x_mid: u64,
    inv2: u64,
    xn2: u64,
    gu: u64,
    act: u64,
    /// LoRA hidden `x A^T` per target (0 where the layer has no adapter).
    h: [u64; 7],
}

/// Scratch and per-batch buffers.
#[derive(Debug, Clone, Copy)]
struct Work {
    inv_f: u64,
    xn_f: u64,
    head_x: u64,
    logits: u64,
    nll: u64,
    dx: u64,
    dxn: u64,
    d_act: u64,
    d_gu: u64,
    d_o: u64,
    d_qkv: u64,
    dh: u64,
    drop_x: u64,
    drop_dx: u64,
    scores: u64,
    dscores: u64,
    tokens: u64,
    targets: u64,
    weights: u64,
    rows: u64,
}

/// The frozen model, adapters and activations on a device, and the step code over them.
pub struct DeviceTrainer<B: Backend> {
    be: B,
    c: ModelConfig,
    /// Adapter layout (its values are not used: the device copy at `vals` is).
    lora: LoraParams,
    embed: u64,
    head: u64,
    norm: u64,
    cos: u64,
    sin: u64,
    layers: Vec<DevLayer>,
    xs: Vec<u64>,
    acts: Vec<LayerActs>,
    wk: Work,
    vals: u64,
    grads: u64,
    cap: usize,
    max_seq: usize,
    /// Attention heads whose scores fit the scratch buffers at once.
    heads_per_pass: usize,
    /// Width of the fused q|k|v rows, and the column where each target's output starts inside its fused
    /// buffer (from [`FrozenBase::qkv_width`] and [`FrozenBase::column`]).
    qkv_w: usize,
    cols: [usize; 7],
    /// Dropout seed per layer and target of the last forward (`None`: no dropout there).
    seeds: Vec<[Option<u64>; 7]>,
    /// Gathered loss rows of the last forward.
    n_rows: usize,
}

impl<B: Backend> DeviceTrainer<B> {
    /// Copies the frozen model to the device and allocates activations for `max_batch` x `max_seq` tokens,
    /// with at most `scratch_bytes` (at least one head's worth) for the attention scores.
    pub fn new(
        mut be: B,
        base: &FrozenBase,
        lora: &LoraParams,
        max_batch: usize,
        max_seq: usize,
        scratch_bytes: usize,
    ) -> Result<Self, TrainError> {
        let c = base.config.clone();
        if max_seq > base.rope.max_pos() {
            return Err(TrainError::Config("sequence longer than the RoPE table".into()));
        }
        let mut up = |data: &[f32]| -> Result<u64, TrainError> {
            let p = be.alloc(data.len())?;
            be.upload(p, data)?;
            Ok(p)
        };
        let embed = up(&base.embed)?;
        let head = match &base.lm_head {
            Some(h) => up(h)?,
            None => embed,
        };
        let norm = up(&base.norm)?;
        let cos = up(base.rope.cos())?;
        let sin = up(base.rope.sin())?;
        let mut layers = Vec::with_capacity(base.layers.len());
        for l in &base.layers {
            let mut opt = |b: &Option<Vec<f32>>| b.as_ref().map(|v| up(v)).transpose();
            let (b_qkv, b_o, b_gu, b_down) = (opt(&l.b_qkv)?, opt(&l.b_o)?, opt(&l.b_gu)?, opt(&l.b_down)?);
            layers.push(DevLayer {
                ln1: up(&l.ln1)?,
                ln2: up(&l.ln2)?,
                w_qkv: up(&l.w_qkv)?,
                b_qkv,
                w_o: up(&l.w_o)?,
                b_o,
                w_gu: up(&l.w_gu)?,
                b_gu,
                w_down: up(&l.w_down)?,
                b_down,
            });
        }
        let cap = max_batch * max_seq;
        let (h, i, w, q, v) = (c.hidden_size, c.intermediate_size, base.qkv_width(), c.q_dim(), c.vocab_size);
        let r = lora.config.rank;
        let heads = c.num_attention_heads;
        let per_head = cap * max_seq;
        let heads_per_pass = (scratch_bytes / (8 * per_head.max(1))).clamp(1, heads);
        let mut z = |n: usize| be.alloc(n);
        let mut acts = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let mut hb = [0u64; 7];
            for t in Target::ALL {
                if lora.slot(l, t).is_some() {
                    hb[t as usize] = z(cap * r)?;
                }
            }
            acts.push(LayerActs {
                inv1: z(cap)?,
                xn1: z(cap * h)?,
                qkv: z(cap * w)?,
                lse: z(max_batch * heads * max_seq)?,
                attn: z(cap * q)?,
                x_mid: z(cap * h)?,
                inv2: z(cap)?,
                xn2: z(cap * h)?,
                gu: z(cap * 2 * i)?,
                act: z(cap * i)?,
                h: hb,
            });
        }
        let xs = (0..=c.num_hidden_layers).map(|_| z(cap * h)).collect::<Result<Vec<_>, _>>()?;
        let max_in =
            if lora.config.dropout > 0.0 { lora.slots.iter().map(|s| s.in_features).max().unwrap_or(0) } else { 0 };
        let wk = Work {
            inv_f: z(cap)?,
            xn_f: z(cap * h)?,
            head_x: z(cap * h)?,
            logits: z(cap * v)?,
            nll: z(cap)?,
            dx: z(cap * h)?,
            dxn: z(cap * h)?,
            d_act: z(cap * i)?,
            d_gu: z(cap * 2 * i)?,
            d_o: z(cap * q)?,
            d_qkv: z(cap * w)?,
            dh: z(cap * r)?,
            drop_x: z(cap * max_in)?,
            drop_dx: z(cap * max_in)?,
            scores: z(heads_per_pass * per_head)?,
            dscores: z(heads_per_pass * per_head)?,
            tokens: z(cap)?,
            targets: z(cap)?,
            weights: z(cap)?,
            rows: z(cap)?,
        };
        let n = lora.values.len();
        let vals = z(n)?;
        let grads = z(n)?;
        let mut me = Self {
            be,
            c,
            lora: lora.clone(),
            embed,
            head,
            norm,
            cos,
            sin,
            layers,
            xs,
            acts,
            wk,
            vals,
            grads,
            cap,
            max_seq,
            heads_per_pass,
            qkv_w: base.qkv_width(),
            cols: Target::ALL.map(|t| base.column(t)),
            seeds: Vec::new(),
            n_rows: 0,
        };
        me.seeds = vec![[None; 7]; me.c.num_hidden_layers];
        me.be.upload(vals, &lora.values)?;
        Ok(me)
    }

    fn rows(&mut self, name: &'static str, rows: usize, p: &[u64], i: &[i64], f: &[f32]) -> Result<(), TrainError> {
        if rows == 0 {
            return Ok(());
        }
        self.be.launch(name, rows as u32, &KArgs::new(p, i, f))
    }

    fn gemm(&mut self, g: RowGemm) -> Result<(), TrainError> {
        if g.m == 0 || g.n == 0 || g.batch == 0 {
            return Ok(());
        }
        self.be.gemm(&ColGemm::from(&g))
    }

    /// One (unbatched) row-major product `c = alpha op(a) op(b) + beta c`.
    #[allow(clippy::too_many_arguments)]
    fn mm(
        &mut self,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Mat,
        b: Mat,
        beta: f32,
        c: Mat,
    ) -> Result<(), TrainError> {
        self.gemm(RowGemm { ta, tb, m, n, k, alpha, a, b, beta, c, batch: 1, stride_a: 0, stride_b: 0, stride_c: 0 })
    }

    /// `y[m, n] (+)= x[m, k] w[n, k]^T`.
    #[allow(clippy::too_many_arguments)]
    fn linear(&mut self, y: u64, x: u64, w: u64, m: usize, k: usize, n: usize, acc: bool) -> Result<(), TrainError> {
        let beta = if acc { 1.0 } else { 0.0 };
        self.mm(false, true, m, n, k, 1.0, Mat::new(x, k), Mat::new(w, k), beta, Mat::new(y, n))
    }

    /// `dx[m, k] = dy[m, n] w[n, k]`.
    fn linear_bwd_x(&mut self, dx: u64, dy: u64, w: u64, m: usize, k: usize, n: usize) -> Result<(), TrainError> {
        self.mm(false, false, m, k, n, 1.0, Mat::new(dy, n), Mat::new(w, k), 0.0, Mat::new(dx, k))
    }

    fn bias(&mut self, y: u64, b: Option<u64>, rows: usize, n: usize) -> Result<(), TrainError> {
        match b {
            Some(b) => self.rows("add_bias", rows, &[y, b], &[n as i64], &[]),
            None => Ok(()),
        }
    }

    fn dropout(&mut self, out: u64, x: u64, n: usize, seed: u64, acc: bool) -> Result<(), TrainError> {
        let bt = self.be.block_threads() as usize;
        let grid = n.div_ceil(bt).clamp(1, 4096);
        let p = self.lora.config.dropout;
        self.be.launch("dropout", grid as u32, &KArgs::new(&[out, x], &[n as i64, seed as i64, acc as i64], &[p]))
    }

    /// One LoRA branch: `h = x A^T` saved, `y[:, col..] += scale h B^T` (x dropped out when `seed`).
    #[allow(clippy::too_many_arguments)]
    fn branch_fwd(
        &mut self,
        s: Slot,
        x: u64,
        y: u64,
        col: usize,
        width: usize,
        t: usize,
        seed: Option<u64>,
    ) -> Result<(), TrainError> {
        let (r, scale) = (self.lora.config.rank, self.lora.config.scale());
        let (inf, outf) = (s.in_features, s.out_features);
        let input = match seed {
            Some(seed) => {
                self.dropout(self.wk.drop_x, x, t * inf, seed, false)?;
                self.wk.drop_x
            }
            None => x,
        };
        let h = self.acts[s.layer].h[s.target as usize];
        let (a, b) = (at(self.vals, s.a), at(self.vals, s.b));
        self.mm(false, true, t, r, inf, 1.0, Mat::new(input, inf), Mat::new(a, inf), 0.0, Mat::new(h, r))?;
        self.mm(false, true, t, outf, r, scale, Mat::new(h, r), Mat::new(b, r), 1.0, Mat::new(at(y, col), width))
    }

    /// Backward of one branch from `dy` (`[t, out]`, rows `dy.ld` apart): A and B gradients accumulated,
    /// the input gradient added into `dx`.
    fn branch_bwd(&mut self, s: Slot, dy: Mat, x: u64, dx: u64, t: usize) -> Result<(), TrainError> {
        let (r, scale) = (self.lora.config.rank, self.lora.config.scale());
        let (inf, outf) = (s.in_features, s.out_features);
        let h = self.acts[s.layer].h[s.target as usize];
        let (a, b) = (at(self.vals, s.a), at(self.vals, s.b));
        let (da, db) = (at(self.grads, s.a), at(self.grads, s.b));
        let dh = self.wk.dh;
        // dB += scale dy^T h; dh = scale dy B.
        self.mm(true, false, outf, r, t, scale, dy, Mat::new(h, r), 1.0, Mat::new(db, r))?;
        self.mm(false, false, t, r, outf, scale, dy, Mat::new(b, r), 0.0, Mat::new(dh, r))?;
        let seed = self.seeds[s.layer][s.target as usize];
        let (xin, dxo, beta) = match seed {
            Some(seed) => {
                self.dropout(self.wk.drop_x, x, t * inf, seed, false)?;
                (self.wk.drop_x, self.wk.drop_dx, 0.0)
            }
            None => (x, dx, 1.0),
        };
        // dA += dh^T x; dx (+)= dh A.
        self.mm(true, false, r, inf, t, 1.0, Mat::new(dh, r), Mat::new(xin, inf), 1.0, Mat::new(da, inf))?;
        self.mm(false, false, t, inf, r, 1.0, Mat::new(dh, r), Mat::new(a, inf), beta, Mat::new(dxo, inf))?;
        if let Some(seed) = seed {
            self.dropout(dx, self.wk.drop_dx, t * inf, seed, true)?;
        }
        Ok(())
    }

    fn head_geometry(&self) -> (usize, usize, usize, usize, usize, usize) {
        let c = &self.c;
        let (heads, kvh, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        (heads, kvh, d, heads / kvh, self.qkv_w, heads * d)
    }

    /// `[seq, seq]` products `alpha x y^T` of every sequence of the batch, `x` and `y` being one head's
    /// columns of `[batch * seq, ld]` buffers, into `out` (`[batch][seq][seq]`).
    #[allow(clippy::too_many_arguments)]
    fn head_nt(&mut self, x: Mat, y: Mat, alpha: f32, out: u64, batch: usize, seq: usize) -> Result<(), TrainError> {
        let d = self.c.head_dim;
        self.gemm(RowGemm {
            ta: false,
            tb: true,
            m: seq,
            n: seq,
            k: d,
            alpha,
            a: x,
            b: y,
            beta: 0.0,
            c: Mat::new(out, seq),
            batch,
            stride_a: seq * x.ld,
            stride_b: seq * y.ld,
            stride_c: seq * seq,
        })
    }

    /// The passes of heads: `(first head, heads in the pass)`.
    fn passes(&self) -> Vec<(usize, usize)> {
        let (heads, hp) = (self.c.num_attention_heads, self.heads_per_pass);
        (0..heads).step_by(hp).map(|h0| (h0, hp.min(heads - h0))).collect()
    }

    /// Where head `hh`'s `[batch][seq][seq]` block of a scratch buffer starts in a pass from head `h0`.
    fn block(buf: u64, hh: usize, h0: usize, batch: usize, seq: usize) -> u64 {
        at(buf, (hh - h0) * batch * seq * seq)
    }

    /// `o_h = P_h V_g` (or any `[seq, seq] x [seq, d]` product over the batch): `p` a `[batch][seq][seq]`
    /// block, `v` and `out` head columns of `[batch * seq, ld]` buffers.
    #[allow(clippy::too_many_arguments)]
    fn head_nn(
        &mut self,
        ta: bool,
        alpha: f32,
        p: u64,
        v: Mat,
        beta: f32,
        out: Mat,
        batch: usize,
        seq: usize,
    ) -> Result<(), TrainError> {
        self.gemm(RowGemm {
            ta,
            tb: false,
            m: seq,
            n: self.c.head_dim,
            k: seq,
            alpha,
            a: Mat::new(p, seq),
            b: v,
            beta,
            c: out,
            batch,
            stride_a: seq * seq,
            stride_b: seq * v.ld,
            stride_c: seq * out.ld,
        })
    }

    /// Scaled scores `q k^T / sqrt(d)` of heads `h0..h0 + hn` into `scores`.
    fn scores(&mut self, qkv: u64, (h0, hn): (usize, usize), batch: usize, seq: usize) -> Result<(), TrainError> {
        let (heads, _, d, rep, w, _) = self.head_geometry();
        let scale = 1.0 / (d as f32).sqrt();
        for hh in h0..h0 + hn {
            let (q_h, k_g) = (Mat::new(at(qkv, hh * d), w), Mat::new(at(qkv, (heads + hh / rep) * d), w));
            self.head_nt(q_h, k_g, scale, Self::block(self.wk.scores, hh, h0, batch, seq), batch, seq)?;
        }
        Ok(())
    }

    fn attention_fwd(&mut self, la: LayerActs, batch: usize, seq: usize) -> Result<(), TrainError> {
        let (heads, kvh, d, rep, w, q) = self.head_geometry();
        let window = self.c.sliding_window.unwrap_or(0) as i64;
        let sc = self.wk.scores;
        for (h0, hn) in self.passes() {
            self.scores(la.qkv, (h0, hn), batch, seq)?;
            let ints = [seq as i64, batch as i64, window, heads as i64, h0 as i64];
            self.rows("attn_softmax", hn * batch * seq, &[sc, la.lse], &ints, &[])?;
            for hh in h0..h0 + hn {
                let v_g = Mat::new(at(la.qkv, (heads + kvh + hh / rep) * d), w);
                let o_h = Mat::new(at(la.attn, hh * d), q);
                self.head_nn(false, 1.0, Self::block(sc, hh, h0, batch, seq), v_g, 0.0, o_h, batch, seq)?;
            }
        }
        Ok(())
    }

    /// Gradients of q, k and v into `d_qkv` from `d_o`, probabilities recomputed from the saved lse.
    fn attention_bwd(&mut self, la: LayerActs, batch: usize, seq: usize) -> Result<(), TrainError> {
        let (heads, kvh, d, rep, w, q) = self.head_geometry();
        let scale = 1.0 / (d as f32).sqrt();
        let window = self.c.sliding_window.unwrap_or(0) as i64;
        let (d_o, d_qkv, sc, dsc) = (self.wk.d_o, self.wk.d_qkv, self.wk.scores, self.wk.dscores);
        for (h0, hn) in self.passes() {
            self.scores(la.qkv, (h0, hn), batch, seq)?;
            for hh in h0..h0 + hn {
                // dP = dO V^T.
                let (do_h, v_g) = (Mat::new(at(d_o, hh * d), q), Mat::new(at(la.qkv, (heads + kvh + hh / rep) * d), w));
                self.head_nt(do_h, v_g, 1.0, Self::block(dsc, hh, h0, batch, seq), batch, seq)?;
            }
            let ints = [seq as i64, batch as i64, window, heads as i64, h0 as i64];
            self.rows("attn_dsoftmax", hn * batch * seq, &[sc, dsc, la.lse], &ints, &[])?;
            for hh in h0..h0 + hn {
                let (kc, vc) = ((heads + hh / rep) * d, (heads + kvh + hh / rep) * d);
                // The first query head of a kv group writes its k and v gradients, the others add to them.
                let acc = if hh % rep == 0 { 0.0 } else { 1.0 };
                let (ds_h, p_h) = (Self::block(dsc, hh, h0, batch, seq), Self::block(sc, hh, h0, batch, seq));
                let col = |buf: u64, c: usize, ld: usize| Mat::new(at(buf, c), ld);
                // dQ = scale dS K; dK (+)= scale dS^T Q; dV (+)= P^T dO.
                self.head_nn(false, scale, ds_h, col(la.qkv, kc, w), 0.0, col(d_qkv, hh * d, w), batch, seq)?;
                self.head_nn(true, scale, ds_h, col(la.qkv, hh * d, w), acc, col(d_qkv, kc, w), batch, seq)?;
                self.head_nn(true, 1.0, p_h, col(d_o, hh * d, q), acc, col(d_qkv, vc, w), batch, seq)?;
            }
        }
        Ok(())
    }

    fn rope(&mut self, x: u64, t: usize, seq: usize, sign: f32) -> Result<(), TrainError> {
        let c = &self.c;
        let ints = [
            self.qkv_w as i64,
            (c.num_attention_heads + c.num_key_value_heads) as i64,
            (c.head_dim / 2) as i64,
            seq as i64,
        ];
        self.rows("rope", t, &[x, self.cos, self.sin], &ints, &[sign])
    }

    /// The decoder over `tokens`, saving activations; dropout seeds drawn from `rng` when given.
    fn forward(
        &mut self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
        mut rng: Option<&mut StdRng>,
    ) -> Result<(), TrainError> {
        let t = batch * seq;
        assert_eq!(tokens.len(), t);
        assert!(t <= self.cap && seq <= self.max_seq, "batch larger than the device buffers");
        let c = self.c.clone();
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let (w, q) = (self.qkv_w, c.q_dim());
        let eps = c.rms_norm_eps as f32;
        let dropout = self.lora.config.dropout > 0.0;
        self.be.upload(self.wk.tokens, &bits(tokens))?;
        self.rows("gather_rows", t, &[self.xs[0], self.embed, self.wk.tokens], &[h as i64], &[])?;
        for l in 0..c.num_hidden_layers {
            let (la, bl) = (self.acts[l], self.layers[l]);
            let (x_in, x_out) = (self.xs[l], self.xs[l + 1]);
            let mut seeds = [None; 7];
            for tg in Target::ALL {
                if self.lora.slot(l, tg).is_some() && dropout {
                    seeds[tg as usize] = rng.as_deref_mut().map(|r| r.gen::<u64>());
                }
            }
            self.seeds[l] = seeds;
            let slot = |me: &Self, tg: Target| me.lora.slot(l, tg).copied();
            self.rows("rmsnorm_fwd", t, &[la.xn1, la.inv1, x_in, bl.ln1], &[h as i64], &[eps])?;
            self.linear(la.qkv, la.xn1, bl.w_qkv, t, h, w, false)?;
            self.bias(la.qkv, bl.b_qkv, t, w)?;
            for tg in [Target::Q, Target::K, Target::V] {
                if let Some(s) = slot(self, tg) {
                    self.branch_fwd(s, la.xn1, la.qkv, self.cols[tg as usize], w, t, seeds[tg as usize])?;
                }
            }
            self.rope(la.qkv, t, seq, 1.0)?;
            self.attention_fwd(la, batch, seq)?;
            self.be.copy(la.x_mid, x_in, t * h)?;
            self.linear(la.x_mid, la.attn, bl.w_o, t, q, h, true)?;
            self.bias(la.x_mid, bl.b_o, t, h)?;
            if let Some(s) = slot(self, Target::O) {
                self.branch_fwd(s, la.attn, la.x_mid, 0, h, t, seeds[Target::O as usize])?;
            }
            self.rows("rmsnorm_fwd", t, &[la.xn2, la.inv2, la.x_mid, bl.ln2], &[h as i64], &[eps])?;
            self.linear(la.gu, la.xn2, bl.w_gu, t, h, 2 * i, false)?;
            self.bias(la.gu, bl.b_gu, t, 2 * i)?;
            for tg in [Target::Gate, Target::Up] {
                if let Some(s) = slot(self, tg) {
                    self.branch_fwd(s, la.xn2, la.gu, self.cols[tg as usize], 2 * i, t, seeds[tg as usize])?;
                }
            }
            self.rows("swiglu_fwd", t, &[la.act, la.gu], &[i as i64], &[])?;
            self.be.copy(x_out, la.x_mid, t * h)?;
            self.linear(x_out, la.act, bl.w_down, t, i, h, true)?;
            self.bias(x_out, bl.b_down, t, h)?;
            if let Some(s) = slot(self, Target::Down) {
                self.branch_fwd(s, la.act, x_out, 0, h, t, seeds[Target::Down as usize])?;
            }
        }
        Ok(())
    }

    /// Uploads the rows whose loss counts (weight non-zero), their targets and weights; returns the weights
    /// of those rows. Done before the forward is queued, so the copies wait for nothing.
    fn upload_targets(&mut self, targets: &[u32], weights: &[f32]) -> Result<Vec<f32>, TrainError> {
        let rows: Vec<u32> = (0..targets.len() as u32).filter(|&r| weights[r as usize] != 0.0).collect();
        self.n_rows = rows.len();
        let tg: Vec<u32> = rows.iter().map(|&r| targets[r as usize]).collect();
        let wt: Vec<f32> = rows.iter().map(|&r| weights[r as usize]).collect();
        let wk = self.wk;
        self.be.upload(wk.rows, &bits(&rows))?;
        self.be.upload(wk.targets, &bits(&tg))?;
        self.be.upload(wk.weights, &wt)?;
        Ok(wt)
    }

    /// Final norm, LM head on the rows with a weight, weighted cross-entropy (per-row losses into `nll`);
    /// leaves d loss / d logits.
    fn head_loss(&mut self, t: usize) -> Result<(), TrainError> {
        let c = &self.c;
        let (h, v, n) = (c.hidden_size, c.vocab_size, self.n_rows);
        let (eps, top) = (c.rms_norm_eps as f32, self.xs[c.num_hidden_layers]);
        let wk = self.wk;
        self.rows("rmsnorm_fwd", t, &[wk.xn_f, wk.inv_f, top, self.norm], &[h as i64], &[eps])?;
        if n == 0 {
            return Ok(());
        }
        self.rows("gather_rows", n, &[wk.head_x, wk.xn_f, wk.rows], &[h as i64], &[])?;
        self.linear(wk.logits, wk.head_x, self.head, n, h, v, false)?;
        self.rows("xent", n, &[wk.logits, wk.targets, wk.weights, wk.nll], &[v as i64], &[])
    }

    /// `sum(weight * nll)` of the last `head_loss`, summed on the host in row order as the CPU trainer
    /// does (deterministic). Waits for the device.
    fn read_loss(&mut self, wt: &[f32]) -> Result<f64, TrainError> {
        let mut nll = vec![0.0f32; wt.len()];
        self.be.download(self.wk.nll, &mut nll)?;
        Ok(nll.iter().zip(wt).map(|(l, w)| *l as f64 * *w as f64).sum())
    }

    /// Backpropagates the loss left by `head_loss`, adding the LoRA gradients into the accumulator.
    fn backward(&mut self, batch: usize, seq: usize) -> Result<(), TrainError> {
        let c = self.c.clone();
        let t = batch * seq;
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (w, q) = (self.qkv_w, c.q_dim());
        let wk = self.wk;
        let n = self.n_rows;
        self.be.zero(wk.dxn, t * h)?;
        if n > 0 {
            self.linear_bwd_x(wk.head_x, wk.logits, self.head, n, h, v)?;
            self.rows("scatter_rows", n, &[wk.dxn, wk.head_x, wk.rows], &[h as i64], &[])?;
        }
        let top = self.xs[c.num_hidden_layers];
        self.rows("rmsnorm_bwd", t, &[wk.dx, wk.dxn, top, self.norm, wk.inv_f], &[h as i64, 0], &[])?;
        for l in (0..c.num_hidden_layers).rev() {
            let (la, bl, x_in) = (self.acts[l], self.layers[l], self.xs[l]);
            let slot = |me: &Self, tg: Target| me.lora.slot(l, tg).copied();
            // MLP.
            self.linear_bwd_x(wk.d_act, wk.dx, bl.w_down, t, i, h)?;
            if let Some(s) = slot(self, Target::Down) {
                self.branch_bwd(s, Mat::new(wk.dx, h), la.act, wk.d_act, t)?;
            }
            self.rows("swiglu_bwd", t, &[wk.d_gu, wk.d_act, la.gu], &[i as i64], &[])?;
            self.linear_bwd_x(wk.dxn, wk.d_gu, bl.w_gu, t, h, 2 * i)?;
            for tg in [Target::Gate, Target::Up] {
                if let Some(s) = slot(self, tg) {
                    self.branch_bwd(s, Mat::new(at(wk.d_gu, self.cols[tg as usize]), 2 * i), la.xn2, wk.dxn, t)?;
                }
            }
            self.rows("rmsnorm_bwd", t, &[wk.dx, wk.dxn, la.x_mid, bl.ln2, la.inv2], &[h as i64, 1], &[])?;
            // Attention.
            self.linear_bwd_x(wk.d_o, wk.dx, bl.w_o, t, q, h)?;
            if let Some(s) = slot(self, Target::O) {
                self.branch_bwd(s, Mat::new(wk.dx, h), la.attn, wk.d_o, t)?;
            }
            self.attention_bwd(la, batch, seq)?;
            self.rope(wk.d_qkv, t, seq, -1.0)?;
            self.linear_bwd_x(wk.dxn, wk.d_qkv, bl.w_qkv, t, h, w)?;
            for tg in [Target::Q, Target::K, Target::V] {
                if let Some(s) = slot(self, tg) {
                    self.branch_bwd(s, Mat::new(at(wk.d_qkv, self.cols[tg as usize]), w), la.xn1, wk.dxn, t)?;
                }
            }
            self.rows("rmsnorm_bwd", t, &[wk.dx, wk.dxn, x_in, bl.ln1, la.inv1], &[h as i64, 1], &[])?;
        }
        Ok(())
    }
}

impl<B: Backend> DeviceSteps for DeviceTrainer<B> {
    fn set_lora(&mut self, lora: &LoraParams) -> Result<(), TrainError> {
        assert_eq!(lora.values.len(), self.lora.values.len(), "adapter layout changed");
        self.be.upload(self.vals, &lora.values)
    }

    fn zero_grads(&mut self) -> Result<(), TrainError> {
        self.be.zero(self.grads, self.lora.values.len())
    }

    fn micro_batch(
        &mut self,
        batch: &Batch,
        weights: &[f32],
        rng: Option<&mut StdRng>,
        backward: bool,
    ) -> Result<f64, TrainError> {
        let wt = self.upload_targets(&batch.targets, weights)?;
        self.forward(&batch.tokens, batch.batch, batch.seq, rng)?;
        self.head_loss(batch.batch * batch.seq)?;
        if backward {
            self.backward(batch.batch, batch.seq)?;
        }
        // Read last, so the backward is already queued while the host waits.
        self.read_loss(&wt)
    }

    fn read_grads(&mut self, grads: &mut [f32]) -> Result<(), TrainError> {
        self.be.download(self.grads, grads)
    }

    fn logits(&mut self, tokens: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>, TrainError> {
        self.forward(tokens, batch, seq, None)?;
        let c = &self.c;
        let (h, v, t) = (c.hidden_size, c.vocab_size, batch * seq);
        let (eps, top, wk) = (c.rms_norm_eps as f32, self.xs[c.num_hidden_layers], self.wk);
        self.rows("rmsnorm_fwd", t, &[wk.xn_f, wk.inv_f, top, self.norm], &[h as i64], &[eps])?;
        self.linear(wk.logits, wk.xn_f, self.head, t, h, v, false)?;
        let mut out = vec![0.0; t * v];
        self.be.download(wk.logits, &mut out)?;
        Ok(out)
    }

    fn device_bytes(&self) -> usize {
        self.be.bytes()
    }

    fn describe(&self) -> String {
        self.be.describe()
    }
}
