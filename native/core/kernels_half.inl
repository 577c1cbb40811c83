// Vector traits of a 16-bit storage type (bf16, f16) on one ISA. Included inside the anonymous
// namespace of kernels_<isa>.cc, after the ISA's float32 traits F and its converters X are
// defined. The lanes, arithmetic and float64 accumulators are F's (compute type float); only the
// storage moves differ: loads widen 16-bit values to float32 lanes (exact), stores round each lane
// once by the rule of convert_rule.h through X, which wraps the ISA's converters (convert_<isa>.h:
// the rule's one vector home). F's float loads and stores stay visible for the float coefficient
// arrays (the rows kernels load shifts and store partial sums as compute values).
//
// X provides: using Storage (bf16 or f16); load(const uint16_t*), load_tail(p, n) (lanes past n
// are 0, memory past n untouched), store, store_tail(p, v, n), stream(p, v) (non-temporal, to a
// kStreamAlign-aligned p), and kStreamAlign (the bytes of W 16-bit values).
template <class F, class X>
struct HalfTraits : F {
  using T = typename X::Storage;
  using Vec = typename F::Vec;
  using F::load;
  using F::store;
  using F::load_tail;
  using F::store_tail;
  static constexpr size_t kStreamAlign = X::kStreamAlign;
  static const uint16_t* bits(const T* p) { return reinterpret_cast<const uint16_t*>(p); }
  static uint16_t* bits(T* p) { return reinterpret_cast<uint16_t*>(p); }
  static Vec load(const T* p) { return X::load(bits(p)); }
  static void store(T* p, Vec v) { X::store(bits(p), v); }
  static Vec load_tail(const T* p, size_t n, float fill) {
    if constexpr (F::W == 1) {
      return n ? load(p) : fill;
    } else {
      return F::blend_lanes(X::load_tail(bits(p), n), F::set1(fill), n);
    }
  }
  static void store_tail(T* p, Vec v, size_t n) { X::store_tail(bits(p), v, n); }
  static void stream(T* p, Vec v) { X::stream(bits(p), v); }
  static void prefetch(const T* p) { F::prefetch(reinterpret_cast<const float*>(p)); }
};
