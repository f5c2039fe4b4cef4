// reduce.glsl: workgroup-wide fp32 sum and max through shared memory (tree).
// Requires a power-of-two gl_WorkGroupSize.x <= 1024 and `shared float red[]`
// sized by the workgroup; every invocation must call these (uniform control flow).
shared float red[gl_WorkGroupSize.x];

float wg_sum (float v)
{
  uint lid = gl_LocalInvocationID.x;
  red[lid] = v;
  barrier ();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u)
    {
      if (lid < s)
        red[lid] += red[lid + s];
      barrier ();
    }
  float r = red[0];
  barrier ();
  return r;
}

float wg_max (float v)
{
  uint lid = gl_LocalInvocationID.x;
  red[lid] = v;
  barrier ();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u)
    {
      if (lid < s)
        red[lid] = max (red[lid], red[lid + s]);
      barrier ();
    }
  float r = red[0];
  barrier ();
  return r;
}
