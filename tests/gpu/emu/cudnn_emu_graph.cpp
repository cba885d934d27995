/* cudnn_emu_graph.cpp: the host emulation of cuDNN's graph API (cudnn_emu.h): backend
 * descriptors holding typed attributes, checked as they are set and at finalisation; an
 * operation graph of one convolution node; made-up engines proposed by the heuristics; plans
 * and variant packs; execution through cudnn_emu_internal.h's convolution. */
#include <cstring>
#include <map>
#include <vector>

#include "cudnn_emu_internal.h"
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "lfs/log.h"
}

using namespace emu_dnn;

namespace {

struct attribute {
  cudnnBackendAttributeType_t type;
  int64_t count;
  std::vector<unsigned char> bytes;
  template <class T> T get(int64_t i = 0) const {
    T v;
    memcpy(&v, bytes.data() + (size_t)i * sizeof(T), sizeof(T));
    return v;
  }
};

/* A convolution node as its descriptor was finalised. */
struct conv_node {
  int pass;
  conv_geometry g;
  int64_t uid[3], alignment[3]; /* of the x-, w- and y-shaped tensors */
  double alpha, beta;
};

struct engine {
  std::vector<cudnnBackendNumericalNote_t> notes;
  std::vector<cudnnBackendBehaviorNote_t> behaviour;
  int64_t workspace;
  double ms_per_gmac;
  numerics num;
  bool fails; /* builds, but refuses to run */
};
const engine engines[] = {
    {{CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, {}, 0, 1.0, TF32, false},
    {{CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC}, {}, 1 << 20, 1.5, UNORDERED, false},
    {{CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS}, {}, 0, 0.3, HALF, false},
    {{}, {}, (int64_t)2 << 30, 0.5, EXACT, false},
    {{}, {}, 64 << 10, 3.0, EXACT, false},
    {{}, {}, 0, 5.0, EXACT, false},
    {{CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION}, {}, 0, 0.2, HALF, false},
    {{}, {CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION}, 0, 0.1, EXACT, false},
    {{}, {}, 0, 0.05, EXACT, true},
};
/* What each heuristics mode proposes, best first; the fallback list repeats one of mode A's,
 * as cuDNN's often do. */
const std::vector<int> mode_a = {2, 0, 1, 3, 8, 4, 6}, fallback = {4, 5, 7};

}  // namespace

struct lfs_emu_backend_desc {
  cudnnBackendDescriptorType_t type;
  bool finalized;
  std::map<int, attribute> attrs;
  /* what finalisation (or filling, for engine configurations and engines) made of them */
  tensor4 tensor;
  int64_t uid, alignment;
  int pad[2], stride[2];
  conv_node node;       /* operations, graphs, heuristics, configurations, plans */
  std::vector<int> results; /* heuristics */
  int engine_id;        /* configurations, engines, plans */
};

namespace {

size_t element_size(cudnnBackendAttributeType_t t) {
  switch (t) {
  case CUDNN_TYPE_HANDLE: return sizeof(cudnnHandle_t);
  case CUDNN_TYPE_DATA_TYPE: return sizeof(cudnnDataType_t);
  case CUDNN_TYPE_INT64: return sizeof(int64_t);
  case CUDNN_TYPE_FLOAT: return sizeof(float);
  case CUDNN_TYPE_VOID_PTR: return sizeof(void *);
  case CUDNN_TYPE_CONVOLUTION_MODE: return sizeof(cudnnConvolutionMode_t);
  case CUDNN_TYPE_HEUR_MODE: return sizeof(cudnnBackendHeurMode_t);
  case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(cudnnBackendDescriptor_t);
  case CUDNN_TYPE_NUMERICAL_NOTE: return sizeof(cudnnBackendNumericalNote_t);
  case CUDNN_TYPE_BEHAVIOR_NOTE: return sizeof(cudnnBackendBehaviorNote_t);
  }
  return 0;
}

/* The attributes a program may set: on which descriptor, of which type, how many values,
 * and (for descriptor values) of which descriptor type. */
struct settable {
  cudnnBackendAttributeName_t name;
  cudnnBackendDescriptorType_t on;
  cudnnBackendAttributeType_t type;
  int64_t min, max;
  int holds; /* the descriptor type of its values, or -1 */
};
#define OP_ATTRS(OP, X, W, Y, CONV, ALPHA, BETA)                                           \
  {X, OP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_TENSOR_DESCRIPTOR},           \
      {W, OP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_TENSOR_DESCRIPTOR},       \
      {Y, OP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_TENSOR_DESCRIPTOR},       \
      {CONV, OP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR}, \
      {ALPHA, OP, CUDNN_TYPE_FLOAT, 1, 1, -1}, {BETA, OP, CUDNN_TYPE_FLOAT, 1, 1, -1}
const settable settables[] = {
    {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE, 1, 1, -1},
    {CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1, 8, -1},
    {CUDNN_ATTR_TENSOR_STRIDES, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1, 8, -1},
    {CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1, 1, -1},
    {CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1, 1,
     -1},
    {CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE,
     1, 1, -1},
    {CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR,
     CUDNN_TYPE_CONVOLUTION_MODE, 1, 1, -1},
    {CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 1,
     1, -1},
    {CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 1, 3,
     -1},
    {CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64,
     1, 3, -1},
    {CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 1,
     3, -1},
    {CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64,
     1, 3, -1},
    OP_ATTRS(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
             CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
             CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
             CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
             CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
             CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA),
    OP_ATTRS(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA),
    OP_ATTRS(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
             CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA),
    {CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, -2 /* any operation */},
    {CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, CUDNN_TYPE_HANDLE,
     1, 1, -1},
    {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR},
    {CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, CUDNN_TYPE_HEUR_MODE, 1, 1,
     -1},
    {CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, CUDNN_TYPE_HANDLE,
     1, 1, -1},
    {CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, 1, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR},
    {CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR,
     CUDNN_TYPE_VOID_PTR, 1, 64, -1},
    {CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_INT64, 1,
     64, -1},
    {CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_VOID_PTR,
     1, 1, -1},
};

bool is_operation(cudnnBackendDescriptorType_t t) {
  return t == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR;
}

const attribute *find(const lfs_emu_backend_desc *d, cudnnBackendAttributeName_t name) {
  auto it = d->attrs.find(name);
  return it == d->attrs.end() ? NULL : &it->second;
}

/* ---- finalisation, type by type: BAD_PARAM where something is missing or wrong ---- */

cudnnStatus_t finalize_tensor(lfs_emu_backend_desc *d) {
  const attribute *type = find(d, CUDNN_ATTR_TENSOR_DATA_TYPE);
  const attribute *dims = find(d, CUDNN_ATTR_TENSOR_DIMENSIONS);
  const attribute *strides = find(d, CUDNN_ATTR_TENSOR_STRIDES);
  const attribute *uid = find(d, CUDNN_ATTR_TENSOR_UNIQUE_ID);
  const attribute *align = find(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT);
  if (!type || !dims || !strides || !uid || !align || dims->count != strides->count)
    return CUDNN_STATUS_BAD_PARAM;
  if (type->get<cudnnDataType_t>() != CUDNN_DATA_FLOAT || dims->count != 4)
    return CUDNN_STATUS_NOT_SUPPORTED;
  for (int i = 0; i < 4; i++) {
    d->tensor.dim[i] = dims->get<int64_t>(i), d->tensor.stride[i] = strides->get<int64_t>(i);
    if (d->tensor.dim[i] < 1 || d->tensor.stride[i] < 1) return CUDNN_STATUS_BAD_PARAM;
  }
  d->uid = uid->get<int64_t>(), d->alignment = align->get<int64_t>();
  if (d->alignment < 1 || (d->alignment & (d->alignment - 1))) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_convolution(lfs_emu_backend_desc *d) {
  const attribute *comp = find(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE);
  const attribute *mode = find(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE);
  const attribute *dims = find(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS);
  const attribute *dil = find(d, CUDNN_ATTR_CONVOLUTION_DILATIONS);
  const attribute *str = find(d, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES);
  const attribute *pre = find(d, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS);
  const attribute *post = find(d, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS);
  if (!comp || !mode || !dims || !dil || !str || !pre || !post) return CUDNN_STATUS_BAD_PARAM;
  const int64_t n = dims->get<int64_t>();
  if (dil->count != n || str->count != n || pre->count != n || post->count != n)
    return CUDNN_STATUS_BAD_PARAM;
  if (n != 2 || comp->get<cudnnDataType_t>() != CUDNN_DATA_FLOAT ||
      mode->get<cudnnConvolutionMode_t>() != CUDNN_CROSS_CORRELATION)
    return CUDNN_STATUS_NOT_SUPPORTED;
  for (int i = 0; i < 2; i++) {
    if (dil->get<int64_t>(i) != 1 || pre->get<int64_t>(i) != post->get<int64_t>(i))
      return CUDNN_STATUS_NOT_SUPPORTED; /* the emulation's limits */
    d->pad[i] = (int)pre->get<int64_t>(i), d->stride[i] = (int)str->get<int64_t>(i);
    if (d->pad[i] < 0 || d->stride[i] < 1) return CUDNN_STATUS_BAD_PARAM;
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_operation(lfs_emu_backend_desc *d) {
  const int pass = d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ? PASS_FORWARD
                   : d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
                       ? PASS_DATA
                       : PASS_FILTER;
  const lfs_emu_backend_desc *t[3] = {NULL, NULL, NULL}, *conv = NULL;
  double scalars[2] = {0.0, 0.0};
  int have_scalars = 0;
  for (const settable &s : settables) {
    if (s.on != d->type) continue;
    const attribute *a = find(d, s.name);
    if (!a) return CUDNN_STATUS_BAD_PARAM;
    if (s.type == CUDNN_TYPE_FLOAT) {
      scalars[have_scalars++] = a->get<float>();
    } else if (s.holds == CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR) {
      conv = a->get<lfs_emu_backend_desc *>();
    } else {
      int k = 0;
      while (t[k]) k++;
      t[k] = a->get<lfs_emu_backend_desc *>();
    }
  }
  conv_node &nd = d->node;
  nd.pass = pass;
  nd.g = conv_geometry{t[0]->tensor, t[1]->tensor, t[2]->tensor, conv->pad[0], conv->pad[1],
                       conv->stride[0], conv->stride[1],
                       (int)(t[0]->tensor.dim[1] / t[1]->tensor.dim[1])};
  if (!geometry_problem(nd.g).empty()) return CUDNN_STATUS_BAD_PARAM;
  for (int k = 0; k < 3; k++) {
    nd.uid[k] = t[k]->uid, nd.alignment[k] = t[k]->alignment;
    for (int j = 0; j < k; j++)
      if (nd.uid[j] == nd.uid[k]) return CUDNN_STATUS_BAD_PARAM;
  }
  nd.alpha = scalars[0], nd.beta = scalars[1];
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_graph(lfs_emu_backend_desc *d) {
  const attribute *ops = find(d, CUDNN_ATTR_OPERATIONGRAPH_OPS);
  const attribute *handle = find(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE);
  if (!ops || !handle) return CUDNN_STATUS_BAD_PARAM;
  expect_live(handle->get<cudnnHandle_t>(), "cudnnBackendFinalize (operation graph's handle)");
  d->node = ops->get<lfs_emu_backend_desc *>()->node;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_heuristics(lfs_emu_backend_desc *d) {
  const attribute *graph = find(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
  const attribute *mode = find(d, CUDNN_ATTR_ENGINEHEUR_MODE);
  if (!graph || !mode) return CUDNN_STATUS_BAD_PARAM;
  d->node = graph->get<lfs_emu_backend_desc *>()->node;
  d->results = mode->get<cudnnBackendHeurMode_t>() == CUDNN_HEUR_MODE_FALLBACK ? fallback : mode_a;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_plan(lfs_emu_backend_desc *d) {
  const attribute *handle = find(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE);
  const attribute *cfg = find(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
  if (!handle || !cfg) return CUDNN_STATUS_BAD_PARAM;
  expect_live(handle->get<cudnnHandle_t>(), "cudnnBackendFinalize (execution plan's handle)");
  const lfs_emu_backend_desc *c = cfg->get<lfs_emu_backend_desc *>();
  d->node = c->node, d->engine_id = c->engine_id;
  counts.graph_plans++;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_pack(lfs_emu_backend_desc *d) {
  const attribute *ptrs = find(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
  const attribute *uids = find(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
  if (!ptrs || !uids || !find(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE) || ptrs->count != uids->count)
    return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

/* ---- reading attributes back ---- */

template <class T>
cudnnStatus_t give(const std::vector<T> &values, int64_t requested, int64_t *count,
                   void *elements) {
  *count = (int64_t)values.size();
  for (int64_t i = 0; i < requested && i < (int64_t)values.size(); i++)
    ((T *)elements)[i] = values[(size_t)i];
  return CUDNN_STATUS_SUCCESS;
}

/* Fills descriptors the caller created as `type`. */
cudnnStatus_t fill(void *elements, int64_t i, cudnnBackendDescriptorType_t type,
                   const lfs_emu_backend_desc *from, int engine_id) {
  lfs_emu_backend_desc *to = ((lfs_emu_backend_desc **)elements)[i];
  expect_live(to, "cudnnBackendGetAttribute (a descriptor to fill)");
  if (to->type != type) return CUDNN_STATUS_BAD_PARAM;
  to->node = from->node, to->engine_id = engine_id, to->finalized = true;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t type,
                                           cudnnBackendDescriptor_t *desc) {
  if (type < CUDNN_BACKEND_TENSOR_DESCRIPTOR || type > CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
    return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = new lfs_emu_backend_desc();
  (*desc)->type = type;
  track(*desc);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t desc) {
  untrack(desc, "cudnnBackendDestroyDescriptor");
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t desc,
                                       cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t count,
                                       const void *elements) {
  expect_live(desc, "cudnnBackendSetAttribute");
  if (desc->finalized || !elements) return CUDNN_STATUS_BAD_PARAM;
  const settable *s = NULL;
  for (const settable &t : settables)
    if (t.name == name && t.on == desc->type) s = &t;
  if (!s || s->type != type || count < s->min || count > s->max) return CUDNN_STATUS_BAD_PARAM;
  if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (int64_t i = 0; i < count; i++) {
      const lfs_emu_backend_desc *v = ((const cudnnBackendDescriptor_t *)elements)[i];
      expect_live(v, "cudnnBackendSetAttribute (a descriptor value)");
      if (!v->finalized) return CUDNN_STATUS_BAD_PARAM;
      if (s->holds == -2 ? !is_operation(v->type) : (int)v->type != s->holds)
        return CUDNN_STATUS_BAD_PARAM;
    }
  const size_t bytes = element_size(type) * (size_t)count;
  attribute a{type, count, std::vector<unsigned char>(bytes)};
  memcpy(a.bytes.data(), elements, bytes);
  desc->attrs[name] = a;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t desc) {
  expect_live(desc, "cudnnBackendFinalize");
  if (desc->finalized) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t rc = CUDNN_STATUS_BAD_PARAM;
  switch (desc->type) {
  case CUDNN_BACKEND_TENSOR_DESCRIPTOR: rc = finalize_tensor(desc); break;
  case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: rc = finalize_convolution(desc); break;
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
    rc = finalize_operation(desc);
    break;
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: rc = finalize_graph(desc); break;
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: rc = finalize_heuristics(desc); break;
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: rc = finalize_plan(desc); break;
  case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: rc = finalize_pack(desc); break;
  default: break; /* engine configurations and engines are filled by cuDNN, not finalised */
  }
  desc->finalized = rc == CUDNN_STATUS_SUCCESS;
  return rc;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t desc,
                                       cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t requested,
                                       int64_t *count, void *elements) {
  expect_live(desc, "cudnnBackendGetAttribute");
  if (!desc->finalized || requested < 0 || (requested > 0 && !elements))
    return CUDNN_STATUS_BAD_PARAM;
  if (name == CUDNN_ATTR_ENGINEHEUR_RESULTS && desc->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR &&
      type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
    *count = (int64_t)desc->results.size();
    for (int64_t i = 0; i < requested && i < *count; i++) {
      const cudnnStatus_t rc = fill(elements, i, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, desc,
                                    desc->results[(size_t)i]);
      if (rc != CUDNN_STATUS_SUCCESS) return rc;
    }
    return CUDNN_STATUS_SUCCESS;
  }
  if (name == CUDNN_ATTR_ENGINECFG_ENGINE && desc->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR &&
      type == CUDNN_TYPE_BACKEND_DESCRIPTOR && requested == 1) {
    *count = 1;
    return fill(elements, 0, CUDNN_BACKEND_ENGINE_DESCRIPTOR, desc, desc->engine_id);
  }
  const engine &e = engines[desc->engine_id];
  if (name == CUDNN_ATTR_ENGINE_NUMERICAL_NOTE && desc->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR &&
      type == CUDNN_TYPE_NUMERICAL_NOTE)
    return give(e.notes, requested, count, elements);
  if (name == CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE && desc->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR &&
      type == CUDNN_TYPE_BEHAVIOR_NOTE)
    return give(e.behaviour, requested, count, elements);
  if (name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE &&
      desc->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR && type == CUDNN_TYPE_INT64)
    return give(std::vector<int64_t>{e.workspace}, requested, count, elements);
  return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t h, cudnnBackendDescriptor_t plan,
                                  cudnnBackendDescriptor_t pack) {
  const char *call = "cudnnBackendExecute";
  expect_live(h, call), expect_live(plan, call), expect_live(pack, call);
  if (plan->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !plan->finalized ||
      pack->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR || !pack->finalized)
    return CUDNN_STATUS_BAD_PARAM;
  const attribute *ptrs = find(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
  const attribute *uids = find(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
  void *ws = find(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE)->get<void *>();
  const conv_node &nd = plan->node;
  const void *p[3] = {NULL, NULL, NULL};
  for (int k = 0; k < 3; k++) {
    for (int64_t i = 0; i < uids->count; i++)
      if (uids->get<int64_t>(i) == nd.uid[k]) p[k] = ptrs->get<void *>(i);
    if (!p[k]) return CUDNN_STATUS_BAD_PARAM; /* a tensor of the graph has no pointer */
    if ((uintptr_t)p[k] % (uintptr_t)nd.alignment[k])
      lfs_fatal("emulated cuDNN: %s: tensor %lld at %p breaks its declared %lld-byte alignment",
                call, (long long)nd.uid[k], p[k], (long long)nd.alignment[k]);
  }
  const engine &e = engines[plan->engine_id];
  if (e.workspace) lfs_emu_expect_device(ws, (size_t)e.workspace, call);
  if (e.fails) return CUDNN_STATUS_EXECUTION_FAILED;
  if (!e.behaviour.empty()) counts.compiled_runs++;
  queue_convolution(call, nd.pass, nd.g, p[0], p[1], p[2], nd.alpha, nd.beta, e.num,
                    e.ms_per_gmac);
  return CUDNN_STATUS_SUCCESS;
}
