mod peer;

fn main() {
    let usage = "usage: burn-peer N D_IN D_SAE K TRAIN_BATCH REPEATS";
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect(usage)).collect();
    let [n, d_in, d_sae, k, train_batch, repeats] = a[..] else { panic!("{usage}") };
    for line in peer::run(n, d_in, d_sae, k, train_batch, repeats) {
        println!("{line}");
    }
}
