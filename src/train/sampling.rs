//! Batches and task sampling for one epoch: each task's examples shuffled and bucketed by length, then
//! the tasks' batches mixed proportionally, round-robin, or by temperature.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::Sampling;

/// Training batches of one task for one epoch: shuffled, then bucketed by length within pools of
/// 32 batches so that padding stays small while batch order stays random.
pub(crate) fn bucketed_batches(lengths: &[usize], batch_size: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = order
        .chunks(batch_size * 32)
        .flat_map(|pool| {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| lengths[i]);
            pool.chunks(batch_size).map(|c| c.to_vec()).collect::<Vec<_>>()
        })
        .collect();
    batches.shuffle(rng);
    batches
}

/// The order in which tasks' batches are visited in one epoch.
pub(crate) fn schedule(
    per_task: Vec<Vec<Vec<usize>>>,
    sampling: Sampling,
    temperature: f64,
    rng: &mut StdRng,
) -> Vec<(usize, Vec<usize>)> {
    let total: usize = per_task.iter().map(Vec::len).sum();
    match sampling {
        Sampling::Proportional => {
            let mut all: Vec<(usize, Vec<usize>)> = per_task
                .into_iter()
                .enumerate()
                .flat_map(|(t, bs)| bs.into_iter().map(move |b| (t, b)))
                .collect();
            all.shuffle(rng);
            all
        }
        Sampling::RoundRobin => {
            let mut queues: Vec<std::vec::IntoIter<Vec<usize>>> = per_task.into_iter().map(Vec::into_iter).collect();
            let mut out = Vec::with_capacity(total);
            while out.len() < total {
                for (t, q) in queues.iter_mut().enumerate() {
                    if let Some(b) = q.next() {
                        out.push((t, b));
                    }
                }
            }
            out
        }
        Sampling::Temperature => {
            // as many steps as proportional sampling; a task that runs out starts over on its batches
            let sizes: Vec<f64> = per_task.iter().map(|b| b.len() as f64).collect();
            let weights: Vec<f64> = sizes
                .iter()
                .map(|n| if *n > 0.0 { n.powf(1.0 / temperature) } else { 0.0 })
                .collect();
            let sum: f64 = weights.iter().sum();
            let mut cursor = vec![0usize; per_task.len()];
            let mut out = Vec::with_capacity(total);
            for _ in 0..total {
                let mut x = rng.gen::<f64>() * sum;
                let mut t = 0;
                while t + 1 < weights.len() && (x >= weights[t] || weights[t] == 0.0) {
                    x -= weights[t];
                    t += 1;
                }
                let b = &per_task[t];
                out.push((t, b[cursor[t] % b.len()].clone()));
                cursor[t] += 1;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn batches(n: usize) -> Vec<Vec<usize>> {
        (0..n).map(|i| vec![i]).collect()
    }

    #[test]
    fn round_robin_alternates_until_all_used() {
        let mut rng = StdRng::seed_from_u64(0);
        let order: Vec<usize> = schedule(vec![batches(3), batches(1)], Sampling::RoundRobin, 1.0, &mut rng)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(order, vec![0, 1, 0, 0]);
    }

    #[test]
    fn proportional_visits_each_batch_once() {
        let mut rng = StdRng::seed_from_u64(0);
        let s = schedule(vec![batches(5), batches(2)], Sampling::Proportional, 1.0, &mut rng);
        assert_eq!(s.iter().filter(|(t, _)| *t == 0).count(), 5);
        assert_eq!(s.iter().filter(|(t, _)| *t == 1).count(), 2);
    }

    #[test]
    fn high_temperature_flattens_task_mix() {
        let mut rng = StdRng::seed_from_u64(0);
        let s = schedule(
            vec![batches(900), batches(100)],
            Sampling::Temperature,
            1000.0,
            &mut rng,
        );
        let small = s.iter().filter(|(t, _)| *t == 1).count();
        assert_eq!(s.len(), 1000);
        assert!((400..600).contains(&small), "{small}");
    }

    #[test]
    fn bucketed_batches_cover_all_examples() {
        let mut rng = StdRng::seed_from_u64(1);
        let lengths: Vec<usize> = (0..100).map(|i| i % 17).collect();
        let mut seen: Vec<usize> = bucketed_batches(&lengths, 8, &mut rng).concat();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
