// common.glsl: shared head of every Impasto compute shader.
//
// Storage types: ACT_T for activations, W_T for weights (f16 when ACT_F16 /
// W_F16 are defined). All arithmetic is done in float (fp32) and converted on
// load/store, so reductions always accumulate in fp32.
//
// Every push-constant block starts with PUSH_OFFSETS: one uint per binding, the
// element offset of the tensor inside its descriptor range (descriptor offsets
// must be aligned to minStorageBufferOffsetAlignment; the remainder comes here).
#extension GL_EXT_control_flow_attributes : enable
#if defined(ACT_F16) || defined(W_F16) || defined(SRC_F16) || defined(DST_F16)
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif

#ifdef ACT_F16
#define ACT_T float16_t
#define ACT_V4 f16vec4
#else
#define ACT_T float
#define ACT_V4 vec4
#endif
#ifdef W_F16
#define W_T float16_t
#else
#define W_T float
#endif

#define PUSH_OFFSETS uint off[6];

// Linear workgroup index for grids split over x and y (ivk_grid_1d).
uint linear_group ()
{
  return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}
