//! The ordered-group cores on arbitrary bytes from a peer (message bodies) and from disk
//! (recovered records): never a panic; a refused body changes nothing that later breaks the core.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use palio_topology::BrokerId;
use palio_topology::group::{CausalConfig, CausalGroup, Order, TotalConfig, TotalGroup};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let voters = [BrokerId(1), BrokerId(2), BrokerId(3)];
    // Bodies from a peer.
    for order in [Order::Fifo, Order::Causal] {
        let Ok(mut c) =
            CausalGroup::<Vec<u8>>::new(BrokerId(1), order, CausalConfig::default(), Vec::new())
        else {
            return;
        };
        let _ = c.handle_body(now, BrokerId(2), data);
        c.handle_timeout(now + Duration::from_secs(10));
        while c.poll_effect().is_some() {}
    }
    if let Ok(mut t) = TotalGroup::<Vec<u8>>::new(
        BrokerId(1),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    ) {
        let _ = t.handle_body(now, BrokerId(2), data);
        t.handle_timeout(now + Duration::from_secs(10));
        while t.poll_effect().is_some() {}
    }
    // Records read back from a damaged disk.
    let _ = CausalGroup::<Vec<u8>>::new(
        BrokerId(1),
        Order::Causal,
        CausalConfig::default(),
        vec![data.to_vec()],
    );
    let _ = TotalGroup::<Vec<u8>>::new(
        BrokerId(1),
        &voters,
        TotalConfig::default(),
        vec![data.to_vec()],
        now,
    );
});
