//! Many parameters as one flat vector: the layout of a weight-decay group's gradients,
//! parameters and AdamW moments, so that clipping and the update are a handful of tensor
//! operations for the whole model instead of a dozen per parameter. On the GPU backends every
//! operation costs the host about the same work (autodiff, Burn's fusion, a launch) whatever
//! its size, and for a model this small that work, not the card, set the update's time.
//!
//! A vector holds the parameters' values flattened, in module order, each starting at a multiple
//! of [`ALIGN`] elements with zeros in the gaps: a parameter cut back out of the f32 vector is
//! then a view on the GPU backends, not a copy (CubeCL makes a view only at a multiple of the
//! device's alignment, 512 bytes on CUDA, 128 f32 elements). Of the half-precision copy, a
//! parameter at an odd multiple of 128 is copied out: aligning to 256 elements instead would
//! add a gap after every vector of a hidden size of 128, and each gap is one more piece to
//! concatenate, a kernel of its own on the GPU backends, in every gradient and parameter vector.

use std::collections::HashMap;
use std::ops::Range;

use berthash_kernels::{split, Kernels};
use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::DType;

/// Elements from one segment's start to the next's.
pub const ALIGN: usize = 128;

/// One parameter's place in a flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: ParamId,
    pub offset: usize,
    /// The parameter's shape.
    pub dims: Vec<usize>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }

    /// The parameter's shape as an array of `D` axes.
    pub fn shape<const D: usize>(&self) -> [usize; D] {
        self.dims.clone().try_into().unwrap_or_else(|dims| {
            panic!("a parameter of shape {dims:?} taken as a tensor of {D} axes")
        })
    }
}

/// Where each parameter of a group lies in the group's flat vectors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    segments: Vec<Segment>,
    /// The vectors' length: the last segment's end rounded up to [`ALIGN`].
    len: usize,
}

impl Layout {
    /// Appends a parameter of shape `dims`.
    pub fn push(&mut self, id: ParamId, dims: Vec<usize>) {
        let segment = Segment {
            id,
            offset: self.len,
            dims,
        };
        self.len = segment.range().end.next_multiple_of(ALIGN);
        self.segments.push(segment);
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// One flat vector of `pieces`, each segment's values flattened, in the segments' order.
    pub fn concat<B: Backend>(
        &self,
        pieces: Vec<Tensor<B, 1>>,
        zeros: &mut Zeros<B>,
    ) -> Tensor<B, 1> {
        assert_eq!(
            pieces.len(),
            self.segments.len(),
            "one piece per segment of the layout"
        );
        let mut parts = Vec::with_capacity(2 * pieces.len());
        for (segment, piece) in self.segments.iter().zip(pieces) {
            let end = segment.range().end;
            let gap = end.next_multiple_of(ALIGN) - end;
            let (dtype, device) = (piece.dtype(), piece.device());
            parts.push(piece);
            if gap > 0 {
                parts.push(zeros.get(gap, dtype, &device));
            }
        }
        Tensor::cat(parts, 0)
    }

    /// Each segment's values cut out of `flat`, flattened ([`berthash_kernels::split`]: views on
    /// the GPU backends).
    pub fn split<B: Kernels>(&self, flat: Tensor<B, 1>) -> Vec<Tensor<B, 1>> {
        let ranges: Vec<_> = self.segments.iter().map(Segment::range).collect();
        split(flat, &ranges)
    }
}

/// Zero vectors for the gaps between segments, made once per length and dtype (on the GPU
/// backends each new one is an operation and a kernel).
#[derive(Debug)]
pub struct Zeros<B: Backend> {
    made: HashMap<(usize, DType), Tensor<B, 1>>,
}

impl<B: Backend> Default for Zeros<B> {
    fn default() -> Self {
        Self {
            made: HashMap::new(),
        }
    }
}

impl<B: Backend> Zeros<B> {
    pub fn get(&mut self, len: usize, dtype: DType, device: &B::Device) -> Tensor<B, 1> {
        self.made
            .entry((len, dtype))
            .or_insert_with(|| Tensor::zeros([len], (device, dtype)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn segments_start_aligned_and_cut_back_out_whole() {
        let device = Default::default();
        let (a, b) = (ParamId::new(), ParamId::new());
        let mut layout = Layout::default();
        layout.push(a, vec![3, 2]);
        layout.push(b, vec![ALIGN + 1]);
        assert_eq!(layout.segments()[1].offset, ALIGN);
        assert_eq!(layout.len(), 3 * ALIGN);

        let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], &device);
        let y = Tensor::<Flex, 1>::ones([ALIGN + 1], &device);
        let mut zeros = Zeros::default();
        let flat = layout.concat(vec![x.clone().reshape([6]), y.clone()], &mut zeros);
        assert_eq!(flat.dims(), [3 * ALIGN]);
        // The gaps are zeros: the vector's sum is the parameters' sum.
        assert_eq!(flat.clone().sum().into_scalar(), 21.0 + (ALIGN + 1) as f32);
        let [x_back, y_back] = <[_; 2]>::try_from(layout.split(flat)).unwrap();
        let x_back = x_back.reshape(layout.segments()[0].shape::<2>());
        x_back.into_data().assert_eq(&x.into_data(), true);
        y_back.into_data().assert_eq(&y.into_data(), true);
    }
}
