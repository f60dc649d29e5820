// Test module: a shared library that exports no modhost descriptor.
extern "C" __attribute__((visibility("default"))) int not_a_module() { return 42; }
