//! Pending injected faults of a simulator: "the next n requests of this kind" and "the next n
//! requests of any kind", the first checked first.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Clone, Copy, Debug)]
struct Pending<F> {
    remaining: usize,
    fault: F,
}

impl<F> Pending<F> {
    fn new(n: usize, fault: F) -> Option<Pending<F>> {
        (n > 0).then_some(Pending {
            remaining: n,
            fault,
        })
    }
}

/// Faults waiting for requests, by request kind `K`.
#[derive(Debug)]
pub(crate) struct Faults<K, F> {
    on: HashMap<K, Pending<F>>,
    any: Option<Pending<F>>,
}

impl<K: Eq + Hash, F: Copy> Faults<K, F> {
    pub(crate) fn new() -> Faults<K, F> {
        Faults {
            on: HashMap::new(),
            any: None,
        }
    }

    /// The next `n` requests of `kind` get `fault` (replacing a pending one); `n == 0` clears it.
    pub(crate) fn set(&mut self, kind: K, n: usize, fault: F) {
        match Pending::new(n, fault) {
            Some(p) => self.on.insert(kind, p),
            None => self.on.remove(&kind),
        };
    }

    /// The next `n` requests of any kind get `fault`; `n == 0` clears it.
    pub(crate) fn set_any(&mut self, n: usize, fault: F) {
        self.any = Pending::new(n, fault);
    }

    /// Takes one unit of the fault pending for `kind`, else, when `any` allows it, of the fault
    /// pending for any kind.
    pub(crate) fn take(&mut self, kind: &K, any: bool) -> Option<F> {
        if let Some(p) = self.on.get_mut(kind) {
            let fault = p.fault;
            p.remaining -= 1;
            if p.remaining == 0 {
                self.on.remove(kind);
            }
            return Some(fault);
        }
        if !any {
            return None;
        }
        let p = self.any.as_mut()?;
        let fault = p.fault;
        p.remaining -= 1;
        if p.remaining == 0 {
            self.any = None;
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_faults_come_first_and_run_out() {
        let mut f: Faults<&str, u16> = Faults::new();
        assert_eq!(f.take(&"a", true), None);
        f.set("a", 1, 500);
        f.set_any(2, 503);
        assert_eq!(f.take(&"a", true), Some(500));
        assert_eq!(f.take(&"a", false), None, "any excluded");
        assert_eq!(f.take(&"a", true), Some(503));
        assert_eq!(f.take(&"b", true), Some(503));
        assert_eq!(f.take(&"b", true), None);
        f.set("c", 2, 429);
        f.set("c", 0, 429);
        assert_eq!(f.take(&"c", true), None);
    }
}
