//! A BERT encoder's forward pass in plain Rust, for sentence embeddings: token, position and
//! type embeddings, then per layer multi-head self-attention and a GELU feed-forward block,
//! each followed by a residual sum and layer normalisation; the output is the mean of the
//! token vectors, scaled to unit length (sentence-transformers' mean pooling and normalisation).
//!
//! One sequence at a time and no padding, so no attention mask is needed. Weights are kept as
//! PyTorch stores a linear layer, `[out, in]` row-major, so every output is a dot product of two
//! contiguous rows.

use super::safetensors::Tensors;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub vocab: usize,
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub positions: usize,
    pub types: usize,
    pub eps: f32,
}

#[derive(Debug)]
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Linear {
    fn load(t: &Tensors, name: &str, out: usize, inp: usize) -> Result<Self, String> {
        Ok(Self {
            w: t.f32(&format!("{name}.weight"), &[out, inp])?,
            b: t.f32(&format!("{name}.bias"), &[out])?,
            inp,
            out,
        })
    }

    /// `x` is `n` rows of `inp`; the answer `n` rows of `out`.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.inp;
        let mut y = vec![0.0f32; n * self.out];
        for (row, yrow) in x.chunks_exact(self.inp).zip(y.chunks_exact_mut(self.out)) {
            for ((o, w), b) in yrow
                .iter_mut()
                .zip(self.w.chunks_exact(self.inp))
                .zip(&self.b)
            {
                *o = dot(row, w) + b;
            }
        }
        y
    }
}

#[derive(Debug)]
struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn load(t: &Tensors, name: &str, hidden: usize) -> Result<Self, String> {
        Ok(Self {
            g: t.f32(&format!("{name}.weight"), &[hidden])?,
            b: t.f32(&format!("{name}.bias"), &[hidden])?,
        })
    }

    fn apply(&self, x: &mut [f32], eps: f32) {
        let h = self.g.len();
        for row in x.chunks_exact_mut(h) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.g).zip(&self.b) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

#[derive(Debug)]
pub(crate) struct Bert {
    shape: Shape,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
}

impl Bert {
    pub(crate) fn load(t: &Tensors, s: Shape) -> Result<Self, String> {
        if s.heads == 0 || !s.hidden.is_multiple_of(s.heads) {
            return Err(format!(
                "hidden size {} does not split into {} heads",
                s.hidden, s.heads
            ));
        }
        // Some exports prefix every name with `bert.`.
        let p = if t.f32("embeddings.LayerNorm.weight", &[s.hidden]).is_ok() {
            ""
        } else {
            "bert."
        };
        let h = s.hidden;
        let mut layers = Vec::with_capacity(s.layers);
        for l in 0..s.layers {
            let n = format!("{p}encoder.layer.{l}");
            layers.push(Layer {
                q: Linear::load(t, &format!("{n}.attention.self.query"), h, h)?,
                k: Linear::load(t, &format!("{n}.attention.self.key"), h, h)?,
                v: Linear::load(t, &format!("{n}.attention.self.value"), h, h)?,
                o: Linear::load(t, &format!("{n}.attention.output.dense"), h, h)?,
                norm1: Norm::load(t, &format!("{n}.attention.output.LayerNorm"), h)?,
                up: Linear::load(t, &format!("{n}.intermediate.dense"), s.intermediate, h)?,
                down: Linear::load(t, &format!("{n}.output.dense"), h, s.intermediate)?,
                norm2: Norm::load(t, &format!("{n}.output.LayerNorm"), h)?,
            });
        }
        Ok(Self {
            word: t.f32(
                &format!("{p}embeddings.word_embeddings.weight"),
                &[s.vocab, h],
            )?,
            position: t.f32(
                &format!("{p}embeddings.position_embeddings.weight"),
                &[s.positions, h],
            )?,
            token_type: t.f32(
                &format!("{p}embeddings.token_type_embeddings.weight"),
                &[s.types, h],
            )?,
            norm: Norm::load(t, &format!("{p}embeddings.LayerNorm"), h)?,
            layers,
            shape: s,
        })
    }

    pub(crate) fn max_positions(&self) -> usize {
        self.shape.positions
    }

    /// The unit-length mean-pooled embedding of one token sequence.
    pub(crate) fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let s = &self.shape;
        let h = s.hidden;
        let n = ids.len().min(s.positions);
        let mut x = vec![0.0f32; n * h];
        for (i, id) in ids[..n].iter().enumerate() {
            let id = (*id as usize).min(s.vocab - 1);
            let row = &mut x[i * h..(i + 1) * h];
            let (w, p, t) = (
                &self.word[id * h..][..h],
                &self.position[i * h..][..h],
                &self.token_type[..h],
            );
            for j in 0..h {
                row[j] = w[j] + p[j] + t[j];
            }
        }
        self.norm.apply(&mut x, s.eps);
        for layer in &self.layers {
            self.layer(layer, &mut x, n);
        }
        let mut pooled = vec![0.0f32; h];
        for row in x.chunks_exact(h) {
            for (p, v) in pooled.iter_mut().zip(row) {
                *p += v;
            }
        }
        let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            pooled.iter_mut().for_each(|v| *v /= norm);
        }
        pooled
    }

    fn layer(&self, l: &Layer, x: &mut [f32], n: usize) {
        let s = &self.shape;
        let h = s.hidden;
        let d = h / s.heads;
        let (q, k, v) = (l.q.forward(x), l.k.forward(x), l.v.forward(x));
        let scale = 1.0 / (d as f32).sqrt();
        let mut ctx = vec![0.0f32; n * h];
        let mut scores = vec![0.0f32; n];
        for head in 0..s.heads {
            let off = head * d;
            for i in 0..n {
                let qi = &q[i * h + off..][..d];
                let mut max = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate() {
                    *sc = dot(qi, &k[j * h + off..][..d]) * scale;
                    max = max.max(*sc);
                }
                let mut sum = 0.0;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let out = &mut ctx[i * h + off..][..d];
                for (j, sc) in scores.iter().enumerate() {
                    let p = sc / sum;
                    for (o, vv) in out.iter_mut().zip(&v[j * h + off..][..d]) {
                        *o += p * vv;
                    }
                }
            }
        }
        let attn = l.o.forward(&ctx);
        x.iter_mut().zip(&attn).for_each(|(a, b)| *a += b);
        l.norm1.apply(x, s.eps);
        let mut up = l.up.forward(x);
        up.iter_mut().for_each(|u| *u = gelu(*u));
        let down = l.down.forward(&up);
        x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        l.norm2.apply(x, s.eps);
    }
}

/// The dot product, in eight lanes so the compiler vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// GELU with the exact error function (BERT's `gelu`).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7).
fn erf(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = f64::from(x.abs());
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_gelu_match_known_values() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-6);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
    }
}
