# iot2mqtt_proto_library(NAME <target> ROOT <import root> PROTOS <paths under ROOT>
#                        [GRPC] [IMPORT_DIRS <more roots>] [DEPS ...])
# Generates C++ (and gRPC with GRPC) into ${IOT2MQTT_GEN_DIR}, included as
# "<path>.pb.h". Usable from any directory (tests build protos of their own).
# CMake's protobuf_generate() derives output paths from the source directory,
# which breaks for protos outside the tree (Debian's google/api ones), hence
# this rule.

set(IOT2MQTT_GOOGLEAPIS_DIR "/usr/share/gocode/src/github.com/gogo/googleapis"
    CACHE PATH "Directory holding google/api/*.proto and google/rpc/*.proto")
set(IOT2MQTT_GRPC_PROTO_DIR "/usr/share/grpc-proto"
    CACHE PATH "Directory holding grpc/health/v1/health.proto (Debian grpc-proto)")
set(IOT2MQTT_GEN_DIR "${CMAKE_BINARY_DIR}/gen")
file(MAKE_DIRECTORY "${IOT2MQTT_GEN_DIR}")

function(iot2mqtt_proto_library)
  cmake_parse_arguments(P "GRPC" "NAME;ROOT" "PROTOS;DEPS;IMPORT_DIRS" ${ARGN})
  set(_imports)
  foreach(dir "${P_ROOT}" ${P_IMPORT_DIRS} "${PROJECT_SOURCE_DIR}/proto"
          "${IOT2MQTT_GOOGLEAPIS_DIR}" "${IOT2MQTT_GRPC_PROTO_DIR}" "${Protobuf_INCLUDE_DIR}")
    list(APPEND _imports -I "${dir}")
  endforeach()
  set(_srcs)
  foreach(proto ${P_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" _stem "${proto}")
    set(_outs "${IOT2MQTT_GEN_DIR}/${_stem}.pb.cc" "${IOT2MQTT_GEN_DIR}/${_stem}.pb.h")
    set(_grpc_args)
    if(P_GRPC)
      list(APPEND _outs "${IOT2MQTT_GEN_DIR}/${_stem}.grpc.pb.cc"
                        "${IOT2MQTT_GEN_DIR}/${_stem}.grpc.pb.h")
      set(_grpc_args --grpc_out "${IOT2MQTT_GEN_DIR}"
          "--plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>")
    endif()
    add_custom_command(
      OUTPUT ${_outs}
      COMMAND protobuf::protoc --cpp_out "${IOT2MQTT_GEN_DIR}" ${_grpc_args}
              ${_imports} "${P_ROOT}/${proto}"
      DEPENDS "${P_ROOT}/${proto}" protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
    list(APPEND _srcs ${_outs})
  endforeach()
  add_library(${P_NAME} STATIC ${_srcs})
  target_link_libraries(${P_NAME} PUBLIC protobuf::libprotobuf ${P_DEPS})
  if(P_GRPC)
    target_link_libraries(${P_NAME} PUBLIC gRPC::grpc++)
  endif()
  target_include_directories(${P_NAME} SYSTEM PUBLIC "${IOT2MQTT_GEN_DIR}")
  set_target_properties(${P_NAME} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
