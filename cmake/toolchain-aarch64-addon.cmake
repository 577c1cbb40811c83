# Cross-compiles the Node addon (and the core) for linux-arm64 (glibc) with Debian's
# g++-aarch64-linux-gnu, from scripts/prebuild.sh. Node-API headers are platform independent
# (node-api-headers) and N-API symbols resolve at load time on Linux, so no arm64 Node is needed.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(BN_AARCH64_TRIPLE aarch64-linux-gnu CACHE STRING "Target triple of the cross toolchain")
set(CMAKE_C_COMPILER ${BN_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${BN_AARCH64_TRIPLE}-g++)
set(CMAKE_STRIP ${BN_AARCH64_TRIPLE}-strip)

# Target libraries (libgomp, libstdc++) from the cross sysroot only; programs (node, for the
# node-addon-api include path) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${BN_AARCH64_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
