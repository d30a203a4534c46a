"""Each conclusion of the demo study over several seeds: run the study once per seed, then summarise the run folders.

    for s in 0 1 2 3 4; do modtrace study --task demo --seed $s --out OUT/s$s --no-report; done
    python nbs/benchmarks/demo_seed_studies.py OUT/s0/demo OUT/s1/demo ...     # a table, then mean and spread

Per seed (from each run's RUN/figures): test accuracy of full fine-tuning and SFT (Table 2), the planted-truth check
(Spearman over the 10 language pairs), Fig. 2's and Fig. 4's in-language Δ (positive sets; how many languages' 95%
intervals lie above 0, and the smallest and largest Δ), Fig. 7's and Fig. 8's correlations.
"""
import json, sys
from pathlib import Path
import pandas as pd

def in_language(f:Path) -> pd.DataFrame:
    d = pd.read_csv(f)
    return d[d.test_lang == d.train_lang]

def seed_row(run:Path) -> dict:
    fig, st = run/'figures', json.loads((run/'study.json').read_text())
    acc = pd.read_csv(fig/'table2_accuracy.csv').set_index('lang')
    rel = pd.read_csv(fig/'relatedness_vs_influence.stats.csv').iloc[0]
    f2, f4 = in_language(fig/'fig2_subnetworks_delta_positive.csv'), in_language(fig/'fig4_sft_delta_positive.csv')
    r7, r8 = (pd.read_csv(fig/f).iloc[0] for f in ('fig7_specialization_vs_accuracy.stats.csv', 'fig8_similarity_vs_influence.stats.csv'))
    return {'seed': st['settings']['seed'], 'full FT %': acc.loc['all', 'full FT'], 'SFT %': acc.loc['all', 'SFT'],
            'planted ρ': rel.spearman_rho, 'Fig. 2 Δ>0 (of 5)': int((f2.lo > 0).sum()), 'Fig. 2 Δ min': f2.value.min(),
            'Fig. 2 Δ max': f2.value.max(), 'Fig. 4 Δ>0 (of 5)': int((f4.lo > 0).sum()), 'Fig. 4 Δ mean': f4.value.mean(),
            'Fig. 7 r': r7.pearson_r, 'Fig. 8 r': r8.pearson_r}

if __name__ == '__main__':
    t = pd.DataFrame([seed_row(Path(p)) for p in sys.argv[1:]]).set_index('seed')
    print(t.round(2).to_string())
    print('\nmean, sd, min, max over seeds:')
    print(t.agg(["mean", "std", "min", "max"]).round(2).to_string())
