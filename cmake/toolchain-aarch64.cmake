# Cross-compiling the core and its native tests for linux-arm64 with Debian's cross toolchain
# (g++-aarch64-linux-gnu; OpenMP runtime from libgomp1-arm64-cross). Used by scripts/arm64-test.sh:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake -DBN_BUILD_NATIVE_TESTS=ON
# Binaries run under qemu-user: qemu-aarch64 -L /usr/aarch64-linux-gnu build-arm64/bn_core_test
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(BN_CROSS_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the cross toolchain")
set(BN_CROSS_SYSROOT /usr/${BN_CROSS_TRIPLE} CACHE PATH "Target libraries (Debian multiarch cross layout)")

set(CMAKE_C_COMPILER ${BN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${BN_CROSS_TRIPLE}-g++)

# Look for target libraries and headers only in the target tree, programs only on the host.
set(CMAKE_FIND_ROOT_PATH ${BN_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# try_run and ctest go through the emulator.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${BN_CROSS_SYSROOT})
