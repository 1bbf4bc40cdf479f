"""What the demo ensemble is made of: one spec per model, the single list the generator trains,
the manifest names and the quality check reads.

Diversity is the point (an ensemble of near-copies is no better than one of them), so the models
differ in what they read (title, description, both), how they tokenise (case-sensitive
whitespace words for fastText; lower-cased words, word pairs or character n-grams for ONNX), their
capacity, their loss, the sample they saw (bagging) and the part of the taxonomy they cover.

Full-taxonomy fastText models use hierarchical softmax: a 7,200-way softmax trains ~30x slower.
Softmax and one-vs-all appear only on partial models (two departments, ~1,200 labels).
"""

TD, T, D = ["title", "description"], ["title"], ["description"]

# Partial models: pairs (fastText) and triples (ONNX) of departments, every department covered.
HOME, ELEC, CLOTH, SPORT, TOYS, BEAUTY = (
    "Home & Kitchen", "Electronics", "Clothing & Shoes", "Sports & Outdoors", "Toys & Games",
    "Beauty & Personal Care")
HEALTH, AUTO, GARDEN, OFFICE, PET, TOOLS = (
    "Health & Household", "Automotive", "Garden & Outdoor", "Office Products", "Pet Supplies",
    "Tools & Home Improvement")


def ft(name, fields, cost, depts=None, sample=None, quantize=None, seed=1, **params):
    base = dict(loss="hs", dim=32, epoch=15, lr=0.8, minCount=2, wordNgrams=1, minn=0, maxn=0,
                bucket=0)
    if params.get("minn") or params.get("wordNgrams", 1) > 1:
        base["bucket"] = 100_000
    base.update(params)
    ext = ".ftz" if quantize else ".bin"
    return dict(kind="fasttext", name=name, fields=fields, depts=depts, sample=sample, seed=seed,
                params=base, quantize=quantize, cost=cost,
                path=f"generated/fasttext/{name}{ext}")


def ox(name, fields, feats, cost, hidden=64, epochs=3, depts=None, sample=None, seed=1,
       scores="probabilities", labels="file", input_2d=False, lr=3e-3):
    kind, lo, hi, vocab = feats
    return dict(kind="onnx", name=name, fields=fields, depts=depts, sample=sample, seed=seed,
                features=dict(kind=kind, ngram_min=lo, ngram_max=hi, max_vocab=vocab, min_df=2),
                hidden=hidden, epochs=epochs, lr=lr, scores=scores, labels=labels,
                input_2d=input_2d, cost=cost,
                path=f"generated/onnx/{name}.onnx")


WORD, WORD_20K, WORD12 = ("word", 1, 1, 60_000), ("word", 1, 1, 20_000), ("word", 1, 2, 80_000)
CHAR3, CHAR34, CHAR24 = ("char", 3, 3, 30_000), ("char", 3, 4, 60_000), ("char", 2, 4, 40_000)

# Softmax and one-vs-all need more epochs than hierarchical softmax (and ova a lower rate: NaN).
SOFTMAX = dict(loss="softmax", epoch=10, lr=1.0)
OVA = dict(loss="ova", epoch=12, lr=0.4)
QUANT = dict(qnorm=True, cutoff=0, retrain=False, dsub=2)

MODELS = [
    # fastText, full taxonomy, hierarchical softmax
    ft("ft-td-d32", TD, 20),
    ft("ft-td-d48-mc1", TD, 22, dim=48, epoch=12, lr=0.6, minCount=1),
    ft("ft-td-d16", TD, 14, dim=16, epoch=20, lr=1.0),
    ft("ft-td-d64", TD, 20, dim=64, epoch=10, lr=0.5),
    ft("ft-td-d32-sub35", TD, 24, minn=3, maxn=5),
    ft("ft-td-d32-ng2", TD, 18, wordNgrams=2),
    ft("ft-title-d32", T, 8),
    ft("ft-title-d16", T, 8, dim=16, epoch=20, lr=1.0),
    ft("ft-title-d48", T, 9, dim=48, epoch=12, lr=0.6),
    ft("ft-title-d32-sub36", T, 12, minn=3, maxn=6),
    ft("ft-desc-d32", D, 12, lr=0.4),
    ft("ft-desc-d64", D, 14, dim=64, epoch=10, lr=0.4),
    # fastText, bagged: each on its own 60 % sample of the training split
    ft("ft-bag1-td-d32", TD, 12, sample=0.6, seed=11),
    ft("ft-bag2-td-d32-sub35", TD, 15, sample=0.6, seed=12, minn=3, maxn=5),
    ft("ft-bag3-td-d40", TD, 13, sample=0.6, seed=13, dim=40),
    ft("ft-bag4-title-d32", T, 5, sample=0.6, seed=14),
    ft("ft-bag5-title-d32-sub35", T, 7, sample=0.6, seed=15, minn=3, maxn=5),
    ft("ft-bag6-desc-d32", D, 8, sample=0.6, seed=16, lr=0.4),
    ft("ft-bag7-td-d24", TD, 10, sample=0.6, seed=17, dim=24),
    # fastText, quantised (.ftz)
    ft("ft-td-d32-q", TD, 30, quantize=QUANT, seed=21),
    ft("ft-title-d32-sub35-q", T, 20, quantize=QUANT, seed=22, minn=3, maxn=5),
    # fastText, partial taxonomy: two departments each, softmax or one-vs-all (words only:
    # with subwords both stall at chance on this data, hierarchical softmax does not)
    ft("ft-part-home-garden-softmax", TD, 25, depts=[HOME, GARDEN], **SOFTMAX),
    ft("ft-part-elec-office-ova", TD, 30, depts=[ELEC, OFFICE], **OVA),
    ft("ft-part-cloth-beauty-title-softmax", T, 15, depts=[CLOTH, BEAUTY], **SOFTMAX),
    ft("ft-part-sport-toys-ova", TD, 30, depts=[SPORT, TOYS], **OVA),
    ft("ft-part-health-pet-softmax", TD, 25, depts=[HEALTH, PET], **SOFTMAX),
    ft("ft-part-auto-tools-softmax-d48", TD, 30, depts=[AUTO, TOOLS], dim=48, **SOFTMAX),
    ft("ft-part-office-pet-desc-softmax", D, 20, depts=[OFFICE, PET], **SOFTMAX),
    # ONNX, full taxonomy
    ox("onnx-td-word-h64", TD, WORD, 30),
    ox("onnx-td-word-h128-logits", TD, WORD, 40, hidden=128, scores="logits"),
    ox("onnx-td-word20k-h64", TD, WORD_20K, 28, labels="metadata"),
    ox("onnx-td-word12-h64", TD, WORD12, 35, input_2d=True),
    ox("onnx-td-char34-h64", TD, CHAR34, 40),
    ox("onnx-td-char3-h96-logits", TD, CHAR3, 40, hidden=96, scores="logits", labels="metadata"),
    ox("onnx-td-word-h32", TD, WORD, 25, hidden=32, epochs=4, lr=5e-3),
    ox("onnx-td-word40k-h96", TD, ("word", 1, 1, 40_000), 30, hidden=96, seed=5),
    ox("onnx-title-word-h64", T, WORD, 22),
    ox("onnx-title-char24-h64", T, CHAR24, 25, input_2d=True),
    ox("onnx-title-word12-h48-logits", T, WORD12, 22, hidden=48, scores="logits"),
    ox("onnx-desc-word-h64", D, WORD, 25),
    ox("onnx-desc-char3-h64", D, CHAR3, 25, labels="metadata"),
    ox("onnx-desc-word20k-h48", D, WORD_20K, 22, hidden=48),
    # ONNX, bagged
    ox("onnx-bag1-td-word-h64", TD, WORD, 20, sample=0.6, seed=31),
    ox("onnx-bag2-td-char3-h64", TD, CHAR3, 20, sample=0.6, seed=32),
    ox("onnx-bag3-title-word-h64", T, WORD, 15, sample=0.6, seed=33, input_2d=True),
    ox("onnx-bag4-td-word12-h48-logits", TD, WORD12, 22, sample=0.6, seed=34, hidden=48,
       scores="logits"),
    # ONNX, partial taxonomy: three departments each
    ox("onnx-part-home-elec-cloth-word", TD, WORD, 12, depts=[HOME, ELEC, CLOTH], epochs=4),
    ox("onnx-part-sport-toys-beauty-char34", TD, CHAR34, 14, depts=[SPORT, TOYS, BEAUTY],
       epochs=4),
    ox("onnx-part-health-auto-garden-word12", TD, WORD12, 12, depts=[HEALTH, AUTO, GARDEN],
       epochs=4, labels="metadata"),
    ox("onnx-part-office-pet-tools-title-word", T, WORD, 8, depts=[OFFICE, PET, TOOLS], epochs=4,
       scores="logits"),
]

assert len({m["name"] for m in MODELS}) == len(MODELS), "model names must be unique"
