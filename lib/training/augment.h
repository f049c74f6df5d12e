// augment: SimCLR's augmentation chain for one view of one image, with the
// medical additions, as augment(1) applies it to every image of a stream.
//
// A view is drawn, then rendered:
//   aug_draw    picks every random choice of the view (crop box, flips,
//               angle, jitter factors and order, grey, blur sigma, noise)
//               from counter-based streams named by (seed, epoch, record,
//               view), one stream per kind of choice, so that a choice does
//               not move when another option changes, and nothing depends on
//               the thread or the order in which views are rendered;
//   aug_render  applies them: crop + resize (+ rotation, flips) straight
//               from the u8/u16 source to S x S floats in [0, 1], then
//               colour jitter, greyscale, blur, noise (lib/io/imgops.h).
// The semantics are SimCLR's (TF simclr data_util.py, v2 brightness); the
// crop box is drawn as torchvision's RandomResizedCrop draws it (area
// uniform, aspect ratio log-uniform) with SimCLR's 100 attempts; see
// augment(1) for the details and defaults.
#ifndef MEDSSL_AUGMENT_H
#define MEDSSL_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "imgops.h"
#include "rng.h"

typedef struct {
    int size;                         // output S (S x S)
    int channels;                     // output channels, 1 or 3
    bool eval;                        // centre crop, nothing random
    float crop_fraction;              // eval: the centre square's side / short side
    float area_min, area_max;         // crop area / image area
    float aspect_min, aspect_max;     // crop width / height
    float hflip_p, vflip_p;
    float rotate_deg;                 // angle uniform in [-rotate_deg, rotate_deg]
    float jitter_p;                   // colour jitter applied with this probability
    float brightness, contrast, saturation, hue;  // SimCLR: 0.8s, 0.8s, 0.8s, 0.2s
    float grey_p;
    float blur_p, blur_sigma_min, blur_sigma_max;
    float blur_kernel;                // kernel size / S (SimCLR: 0.1)
    float noise_p, noise_std;         // std in [0, 1] units
} aug_config;

// SimCLR's defaults at size 224, 3 channels, jitter strength 1.
void aug_config_default(aug_config *c);
// Sets brightness, contrast, saturation to 0.8 s and hue to 0.2 s.
void aug_config_jitter_strength(aug_config *c, float s);

enum { AUG_BRIGHTNESS, AUG_CONTRAST, AUG_SATURATION, AUG_HUE };

// Every random choice of one view.
typedef struct {
    double box_x, box_y, box_w, box_h;   // crop box in source pixels
    float angle_deg;
    bool hflip, vflip;
    bool jitter;
    int order[4];                        // AUG_BRIGHTNESS.. in the order applied
    float brightness, contrast, saturation, hue;  // factors, factors, delta
    bool grey;
    bool blur;
    float sigma;
    bool noise;
    rng_t noise_rng;                     // the noise values' own stream
    // PCRL's reconstruction target (aug_render_target): flips and a
    // rotation by quarter turns of the colour-free view, drawn apart from
    // the view's own (each 0.5; k uniform in 0..3).
    bool target_vflip, target_hflip;
    int target_quarter_turns;
} aug_params;

// The view's choices for a source of height x width with `src_channels`
// channels (hue, saturation and grey are never applied to grey sources).
void aug_draw(const aug_config *c, int height, int width, int src_channels,
              uint64_t seed, uint32_t epoch, uint32_t record, uint32_t view, aug_params *p);

// out: (c->channels, S, S) in [0, 1].  Grey sources become RGB by copying
// the plane, RGB sources grey by luma, when c->channels asks.
void aug_render(const aug_config *c, const aug_params *p, const img_src *src, float *out,
                img_workspace *ws);

// PCRL's reconstruction target of the view: its crop, resize, rotation and
// flips without any colour operation, in the output's channels, then
// flipped vertically (target_vflip), horizontally (target_hflip) and turned
// a quarter counter-clockwise target_quarter_turns times, in that order (the
// official code's np.flip(axis=1), np.flip(axis=2), np.rot90(axes=(1, 2))).
// out: (c->channels, S, S) in [0, 1].
void aug_render_target(const aug_config *c, const aug_params *p, const img_src *src, float *out,
                       img_workspace *ws);
// The 6 values that tell the decoder the target's transformation:
// (vflip, hflip, one-hot of the quarter turns 0..3).
void aug_target_code(const aug_params *p, float code[6]);

// Writes a contact sheet PNG: `rows` x `cols` tiles, each (channels, S, S)
// u8 (tiles[r * cols + k]; NULL leaves a blank tile), 2-pixel grey gaps.
// The file appears when complete (written beside it, then renamed).  Returns
// false with a reason in err.
bool aug_write_sheet(const char *path, int rows, int cols, int channels, int size,
                     uint8_t *const *tiles, char *err, size_t errlen);

#endif
