# modhost_grpc: how modhost's own programs link gRPC and protobuf.
#
# With MODHOST_STATIC_GRPC (the default) they link Debian's static archives of
# gRPC, protobuf, upb, re2, c-ares and abseil instead of their 50 shared
# libraries: the dynamic loader then resolves 7 libraries, not 60, and the CLI
# starts in about 3 ms instead of 9 (docs/benchmarks.md, "CLI start").
# OpenSSL goes with it (libssl and libcrypto are another 4,000 symbol
# lookups at start): the programs' own OpenSSL use links modhost_openssl, so
# a process has one copy. zlib stays shared.
include_guard(GLOBAL)

option(MODHOST_STATIC_GRPC "Link gRPC, protobuf and abseil statically into modhost's programs" ON)

find_package(ZLIB REQUIRED)
add_library(modhost_grpc INTERFACE)
add_library(modhost_openssl INTERFACE)
if(MODHOST_STATIC_GRPC)
  find_library(_modhost_ssl_a NAMES libssl.a NO_CACHE)
  find_library(_modhost_crypto_a NAMES libcrypto.a NO_CACHE)
  if(NOT _modhost_ssl_a OR NOT _modhost_crypto_a)
    message(FATAL_ERROR "libssl.a or libcrypto.a is missing (libssl-dev); configure with -DMODHOST_STATIC_GRPC=OFF")
  endif()
  target_link_libraries(modhost_openssl INTERFACE ${_modhost_ssl_a} ${_modhost_crypto_a} Threads::Threads
                                                  ${CMAKE_DL_LIBS})
  target_include_directories(modhost_openssl INTERFACE ${OPENSSL_INCLUDE_DIR})
  find_package(PkgConfig REQUIRED)
  execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --static --libs-only-l grpc++ protobuf
                  OUTPUT_VARIABLE _modhost_grpc_libs RESULT_VARIABLE _modhost_grpc_rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _modhost_grpc_rc EQUAL 0)
    message(FATAL_ERROR "pkg-config cannot list gRPC's static libraries; install libgrpc++-dev, "
                        "or configure with -DMODHOST_STATIC_GRPC=OFF")
  endif()
  separate_arguments(_modhost_grpc_libs UNIX_COMMAND "${_modhost_grpc_libs}")
  set(_archives "")
  set(_shared "")
  foreach(flag IN LISTS _modhost_grpc_libs)
    string(REGEX REPLACE "^-l" "" name "${flag}")
    if(name MATCHES "^(ssl|crypto)$")
      continue()  # in the group below, as modhost_openssl gives them
    endif()
    if(name MATCHES "^(z|m|rt|dl|atomic|pthread)$")
      list(APPEND _shared "${flag}")
      continue()
    endif()
    find_library(_archive_${name} NAMES lib${name}.a NO_CACHE)
    if(NOT _archive_${name})
      message(FATAL_ERROR "lib${name}.a (a static library gRPC needs) is missing; "
                          "configure with -DMODHOST_STATIC_GRPC=OFF")
    endif()
    list(APPEND _archives "${_archive_${name}}")
  endforeach()
  list(REMOVE_DUPLICATES _archives)
  list(REMOVE_DUPLICATES _shared)
  # The archives reference each other in circles: one group.
  target_link_libraries(modhost_grpc INTERFACE "-Wl,--start-group" ${_archives} ${_modhost_ssl_a}
                                               ${_modhost_crypto_a} "-Wl,--end-group" ZLIB::ZLIB Threads::Threads
                                               ${CMAKE_DL_LIBS} ${_shared})
  # The headers still come from the packages' targets.
  target_include_directories(modhost_grpc INTERFACE
                             $<TARGET_PROPERTY:gRPC::grpc++,INTERFACE_INCLUDE_DIRECTORIES>
                             $<TARGET_PROPERTY:protobuf::libprotobuf,INTERFACE_INCLUDE_DIRECTORIES>)
else()
  target_link_libraries(modhost_grpc INTERFACE gRPC::grpc++ protobuf::libprotobuf)
  target_link_libraries(modhost_openssl INTERFACE OpenSSL::SSL OpenSSL::Crypto)
endif()
