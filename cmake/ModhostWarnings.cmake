# modhost_warnings(TARGET): the project's warning set, private to TARGET.
function(modhost_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wold-style-cast -Wcast-align -Woverloaded-virtual
                                           -Wformat=2 -Wimplicit-fallthrough)
  if(MODHOST_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
