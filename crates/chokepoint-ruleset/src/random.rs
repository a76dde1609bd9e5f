//! Seeded randomness shared by the packet core's per-flow actions
//! (`freeze`, `degrade`) and by the rules' `probability` condition: no
//! clock and no thread RNG, so a replay draws the same numbers.

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): one add and a 64-bit finaliser per draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 output function (a bijective 64-bit mixer).
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// The stream of flow `serial` under `seed`. The serial is mixed before
    /// it is added: SplitMix's state only ever advances by a constant, so
    /// `seed + serial * GOLDEN` would make each flow's stream the previous
    /// flow's shifted by one draw.
    pub fn for_flow(seed: u64, serial: u64) -> SplitMix64 {
        SplitMix64(seed ^ mix(serial.wrapping_add(GOLDEN)))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `min..=max`.
    pub fn between(&mut self, min: u32, max: u32) -> u32 {
        let span = u64::from(max - min) + 1;
        min + (self.next_u64() % span) as u32
    }
}

/// The draw of rule `rule` for a flow whose stream seed is `flow` (a
/// [`crate::Facts::draw`]): independent across rules, so two rules with a
/// probability do not fire on the same flows.
#[inline]
pub fn rule_draw(flow: u64, rule: u16) -> u64 {
    mix(flow ^ mix(u64::from(rule).wrapping_add(GOLDEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_of_neighbouring_flows_are_not_shifted_copies() {
        let mut a = SplitMix64::for_flow(7, 1);
        let mut b = SplitMix64::for_flow(7, 2);
        let a2 = [a.next_u64(), a.next_u64(), a.next_u64()];
        let b1 = b.next_u64();
        assert!(!a2.contains(&b1));
    }

    #[test]
    fn between_stays_in_range() {
        let mut r = SplitMix64::for_flow(0, 0);
        for _ in 0..10_000 {
            let v = r.between(15_000, 20_000);
            assert!((15_000..=20_000).contains(&v));
        }
        assert_eq!(r.between(5, 5), 5);
        let _ = r.between(0, u32::MAX);
    }

    #[test]
    fn rule_draws_are_independent_of_each_other() {
        let both = (0..10_000u64)
            .filter(|&f| {
                let d = SplitMix64::for_flow(0, f).next_u64();
                rule_draw(d, 0) % 2 == 0 && rule_draw(d, 1) % 2 == 0
            })
            .count();
        // Independent halves: a quarter of the flows, give or take.
        assert!((2_200..2_800).contains(&both), "{both}");
    }
}
