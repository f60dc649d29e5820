# modhost_add_module(TARGET SOURCES...): builds a native module plugin (.so)
# with hidden visibility that exports only its descriptor.
function(modhost_add_module target)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE modhost::module_api)
  target_compile_definitions(${target} PRIVATE MODHOST_PLUGIN_EXPORT)
  set_target_properties(${target} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
endfunction()
