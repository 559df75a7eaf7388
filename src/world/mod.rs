//! The controlled worlds: data-generating processes with an exactly known gold reward.
//!
//! Every world shares the token layout of [`Vocab`]: `<pad>`, `<bos>`, `<eos>`, then words.
//! A text is a sequence of word tokens; a model sees `<bos> text <eos>`.

pub mod sentiment;
pub mod tabular;

pub use sentiment::{SentimentConfig, SentimentWorld};
pub use tabular::{TabularConfig, TabularWorld};

pub const PAD: i64 = 0;
pub const BOS: i64 = 1;
pub const EOS: i64 = 2;
pub const N_SPECIAL: usize = 3;

/// Token ids to readable words and back.
#[derive(Clone, Debug)]
pub struct Vocab {
    pub words: Vec<String>,
}

impl Vocab {
    pub fn new(word_list: Vec<String>) -> Vocab {
        let mut words = vec!["<pad>".to_string(), "<bos>".to_string(), "<eos>".to_string()];
        words.extend(word_list);
        Vocab { words }
    }

    pub fn size(&self) -> usize {
        self.words.len()
    }

    pub fn is_word(&self, t: i64) -> bool {
        t >= N_SPECIAL as i64 && (t as usize) < self.words.len()
    }

    /// Render tokens as text; stops at the first `<eos>`, skips `<pad>` and `<bos>`.
    pub fn render(&self, tokens: &[i64]) -> String {
        let mut out = Vec::new();
        for &t in tokens {
            if t == EOS {
                out.push("<eos>");
                break;
            }
            if self.is_word(t) {
                out.push(self.words[t as usize].as_str());
            }
        }
        out.join(" ")
    }
}

/// Take `n` names from a list, adding numeric suffixes when the list runs out.
pub(crate) fn names(list: &[&str], n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = list[i % list.len()];
            if i < list.len() {
                base.to_string()
            } else {
                format!("{}{}", base, i / list.len() + 1)
            }
        })
        .collect()
}

pub(crate) fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
