//! A small builder for an ONNX graph: constants become initializers, each node has one output
//! named by the caller, and the graph's inputs and outputs are declared with their types.

use crate::proto::{
    AttributeProto, Dimension, GraphProto, NodeProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto, ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS,
    DATA_TYPE_FLOAT, DATA_TYPE_INT64,
};

/// One dimension of a declared input or output: fixed, or free under a name.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// An attribute of a node.
#[derive(Clone)]
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
}

impl Attr {
    fn proto(self) -> AttributeProto {
        let (name, r#type) = match &self {
            Attr::Int(name, _) => (name, ATTRIBUTE_INT),
            Attr::Ints(name, _) => (name, ATTRIBUTE_INTS),
            Attr::Float(name, _) => (name, ATTRIBUTE_FLOAT),
        };
        let mut proto = AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(r#type),
            ..Default::default()
        };
        match self {
            Attr::Int(_, i) => proto.i = Some(i),
            Attr::Ints(_, ints) => proto.ints = ints,
            Attr::Float(_, f) => proto.f = Some(f),
        }
        proto
    }
}

#[derive(Default)]
pub struct Graph {
    proto: GraphProto,
}

impl Graph {
    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) -> String {
        self.proto.input.push(value_info(name, elem_type, dims));
        name.to_string()
    }

    /// Declares a graph output (a value some node produces).
    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.proto.output.push(value_info(name, elem_type, dims));
    }

    /// An f32 initializer.
    pub fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DATA_TYPE_FLOAT, dims, bytes)
    }

    /// An int64 initializer.
    pub fn int64s(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DATA_TYPE_INT64, dims, bytes)
    }

    fn initializer(
        &mut self,
        name: &str,
        data_type: i32,
        dims: &[usize],
        bytes: Vec<u8>,
    ) -> String {
        self.proto.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            name: Some(name.to_string()),
            raw_data: Some(bytes),
        });
        name.to_string()
    }

    /// Adds a node of `op` whose one output (and the node itself) is called `output`.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, output: &str) -> String {
        self.proto.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op.to_string()),
            attribute: attrs.into_iter().map(Attr::proto).collect(),
        });
        output.to_string()
    }

    pub fn finish(mut self, name: &str) -> GraphProto {
        self.proto.name = Some(name.to_string());
        self.proto
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            Dim::Named(s) => Dimension {
                dim_value: None,
                dim_param: Some(s.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}
