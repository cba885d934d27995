/* config_schema.c: every section and key lfsearch knows, with its type, default,
 * allowed values and a one-line help text (DESIGN §7). config.c validates all
 * input against this table; lfs_config_new checks the table itself. */
#include <math.h>

#include "core/config_internal.h"
#include "lfs/config.h"

/* "Unbounded" integer keys stop at INT32_MAX so that callers may keep them in an int. */
#define LFS_CFG_INT_BIG 2147483647.0
/* 2^53: the largest integer a double (and Python's json) carries exactly. */
#define LFS_CFG_SEED_MAX 9007199254740992.0

#define LFS_CFG_INT(s, k, def, lo, hi, h)                                                      \
  {.section = s, .key = k, .type = LFS_CFG_INT, .default_value = def, .min = lo, .max = hi,    \
   .help = h}
#define LFS_CFG_REAL(s, k, def, lo, hi, h)                                                     \
  {.section = s, .key = k, .type = LFS_CFG_REAL, .default_value = def, .min = lo, .max = hi,   \
   .help = h}
/* A real that must be strictly positive. */
#define LFS_CFG_POSITIVE(s, k, def, hi, h)                                                     \
  {.section = s, .key = k, .type = LFS_CFG_REAL, .default_value = def, .min = 0, .max = hi,    \
   .help = h, .min_exclusive = 1}
#define LFS_CFG_BOOL(s, k, def, h)                                                             \
  {.section = s, .key = k, .type = LFS_CFG_BOOL, .default_value = def, .help = h}
#define LFS_CFG_STRING(s, k, def, h)                                                           \
  {.section = s, .key = k, .type = LFS_CFG_STRING, .default_value = def, .help = h}
#define LFS_CFG_CHOICE(s, k, def, list, h)                                                     \
  {.section = s, .key = k, .type = LFS_CFG_CHOICE, .default_value = def, .choices = list,      \
   .help = h}

const lfs_cfg_key lfs_cfg_schema[] = {
    /* [run] */
    LFS_CFG_STRING("run", "name", "run", "name of the run, used in log lines and output paths"),
    LFS_CFG_INT("run", "seed", "1", 0, LFS_CFG_SEED_MAX,
                "seed of every random stream (init, data order, flips, dropout, policy)"),
    LFS_CFG_STRING("run", "out_dir", "runs", "directory for the run log and other outputs"),
    LFS_CFG_INT("run", "threads", "0", 0, 1024,
                "CPU threads per rank (OpenMP, OpenBLAS); 0 = as the environment says"),
    LFS_CFG_INT("run", "log_every", "10", 1, LFS_CFG_INT_BIG, "print progress every this many steps"),
    LFS_CFG_CHOICE("run", "backend", "cpu", "cpu|cuda|cpu-staged",
                   "compute backend: cpu, cuda (the GPU of the rank's node-local index), or "
                   "cpu-staged (the CPU driven like a GPU, for tests)"),
    LFS_CFG_INT("run", "steps", "0", 0, LFS_CFG_INT_BIG,
                "stop after this many training steps; 0 = the whole schedule"),

    /* [data] */
    LFS_CFG_STRING("data", "train", "",
                   "training set: an lfsearch HDF5 dataset or a manifest of shards"),
    LFS_CFG_STRING("data", "val_pairs", "", "pair set of held-out identities for the search reward"),
    LFS_CFG_STRING("data", "test_pairs", "", "pair set reported at the end (a benchmark)"),
    LFS_CFG_INT("data", "batch_size", "128", 1, 65536,
                "global batch, split over the ranks of a candidate group"),
    LFS_CFG_INT("data", "image_size", "112", 8, 1024, "input height and width in pixels"),
    LFS_CFG_INT("data", "classes", "1000", 1, 1e8, "number of identities (must match the dataset)"),
    LFS_CFG_BOOL("data", "flip", "true", "random horizontal flips of training images"),

    /* [model] */
    LFS_CFG_CHOICE("model", "arch", "r50", "tiny|r18|r34|r50|r100|r200|mbf",
                   "network: iresnet depth, tiny (tests, demo) or MobileFaceNet"),
    LFS_CFG_INT("model", "embedding_size", "512", 2, 65536, "embedding dimension D"),
    LFS_CFG_REAL("model", "dropout", "0", 0, 0.99, "dropout before the embedding layer"),
    LFS_CFG_INT("model", "width", "16", 1, 4096, "channel width of the demo network"),
    LFS_CFG_INT("model", "blocks", "2", 1, 64, "residual blocks of the demo network"),
    LFS_CFG_BOOL("model", "sync_bn", "false",
                 "batch norm with the statistics of the whole global batch (all ranks of a group)"),

    /* [head] */
    LFS_CFG_CHOICE("head", "loss", "arcface",
                   "softmax|sphereface|cosface|arcface|combined|mv_softmax|search_softmax|amlfs",
                   "loss of the cosine head (fixed-loss training)"),
    LFS_CFG_POSITIVE("head", "scale", "32", 1024, "logit scale s"),
    LFS_CFG_REAL("head", "m1", "1", 0, 10, "multiplicative angular margin (SphereFace)"),
    LFS_CFG_REAL("head", "m2", "0.5", 0, 3.2, "additive angular margin (ArcFace)"),
    LFS_CFG_REAL("head", "m3", "0", 0, 2, "additive cosine margin (CosFace)"),
    LFS_CFG_CHOICE("head", "margin_grad", "exact", "exact|straight",
                   "gradient of the margin: exact, or straight-through (dpsi/dc = 1)"),
    LFS_CFG_REAL("head", "mv_t", "1.2", 0, 4, "MV-Softmax t for mis-classified vectors"),
    LFS_CFG_CHOICE("head", "mv_mode", "adaptive", "adaptive|fixed",
                   "MV-Softmax: adaptive t*c + t - 1, or fixed c + t"),
    LFS_CFG_REAL("head", "a", "0", -1e6, 0,
                 "search_softmax: the fixed modulation a <= 0 (0 is plain softmax)"),
    LFS_CFG_REAL("head", "lambda_base", "1000", 0, 1e9, "SphereFace annealing: lambda_0"),
    LFS_CFG_REAL("head", "lambda_gamma", "1e-4", 0, 1, "SphereFace annealing: gamma"),
    LFS_CFG_REAL("head", "lambda_power", "2", 0, 100, "SphereFace annealing: power p"),
    LFS_CFG_REAL("head", "lambda_min", "5", 0, 1e9, "SphereFace annealing: lambda_min"),

    /* [search] */
    LFS_CFG_CHOICE("search", "space", "search_softmax",
                   "search_softmax|random_softmax|amlfs|cosface_m|arcface_m",
                   "search space of the loss function"),
    LFS_CFG_INT("search", "candidates", "4", 1, 4096, "candidates M trained in parallel (M * ranks_per_candidate MPI ranks)"),
    LFS_CFG_INT("search", "ranks_per_candidate", "1", 1, 65536,
                "MPI ranks of each candidate group (data parallel inside it)"),
    LFS_CFG_INT("search", "warmup_epochs", "2", 0, 100000,
                "leading epochs where every candidate trains at the space's warm-up point"
                " (u = -1 for Search-Softmax)"),
    LFS_CFG_REAL("search", "policy_lr", "0.05", 0, 100, "Adam step size of the policy mean"),
    LFS_CFG_REAL("search", "sigma", "0", 0, 100,
                 "standard deviation of the Gaussian policy (0: the space's default, DESIGN 1.6)"),
    LFS_CFG_BOOL("search", "learn_sigma", "false", "also learn the policy's standard deviation"),
    LFS_CFG_INT("search", "intervals", "6", 1, 64, "AM-LFS: piecewise-linear intervals N"),
    LFS_CFG_BOOL("search", "tau", "false", "AM-LFS: also search the transform of p_y"),
    LFS_CFG_CHOICE("search", "random_per", "step", "step|epoch",
                   "random_softmax: draw a fresh a every step or every epoch"),

    /* [optim] */
    LFS_CFG_REAL("optim", "lr", "0.1", 0, 100, "base learning rate (SGD)"),
    LFS_CFG_REAL("optim", "momentum", "0.9", 0, 1, "SGD momentum"),
    LFS_CFG_REAL("optim", "weight_decay", "5e-4", 0, 1, "L2 weight decay"),
    LFS_CFG_CHOICE("optim", "schedule", "multistep", "multistep|poly", "learning-rate schedule"),
    LFS_CFG_STRING("optim", "milestones", "8,14,18",
                   "multistep: comma-separated epochs where the rate is multiplied by lr_gamma"),
    LFS_CFG_REAL("optim", "lr_gamma", "0.1", 0, 1, "multistep: factor applied at each milestone"),
    LFS_CFG_REAL("optim", "poly_power", "2", 0, 10,
                 "poly: exponent p of (1 - (step - warmup)/(steps - warmup))^p"),
    LFS_CFG_INT("optim", "warmup_epochs", "0", 0, 100000, "epochs of linear learning-rate warm-up"),
    LFS_CFG_INT("optim", "epochs", "20", 1, 100000, "training epochs"),
    LFS_CFG_REAL("optim", "clip_norm", "0", 0, INFINITY, "global gradient-norm clip; 0 = off"),
    LFS_CFG_BOOL("optim", "decay_bn", "true",
                 "apply weight decay to BN, PReLU and bias parameters too (false: weights only)"),

    /* [checkpoint] */
    LFS_CFG_STRING("checkpoint", "dir", "checkpoints", "directory of checkpoints"),
    LFS_CFG_INT("checkpoint", "every_steps", "0", 0, LFS_CFG_INT_BIG,
                "also checkpoint every this many steps; 0 = at epoch ends only"),
    LFS_CFG_INT("checkpoint", "keep", "3", 1, 1000000, "complete checkpoints kept on disk"),
};

const size_t lfs_cfg_schema_count = sizeof lfs_cfg_schema / sizeof lfs_cfg_schema[0];

/* Keys that earlier versions had, and so wrote into every stored configuration
 * (checkpoints, run logs), with what replaced them. */
const lfs_cfg_retired lfs_cfg_retired_keys[] = {
    {"search", "epochs", "the search runs for [optim] epochs"},
    {"search", "reward", "the reward is always [data] val_pairs; test_pairs are only logged"},
    {"search", "warmup_data_parallel",
     "warm-up epochs train on every candidate group; one data-parallel warm-up is not built"},
};
const size_t lfs_cfg_retired_count = sizeof lfs_cfg_retired_keys / sizeof lfs_cfg_retired_keys[0];
